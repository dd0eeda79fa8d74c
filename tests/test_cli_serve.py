"""`raftchat serve` as a real process: it listens, answers /healthz, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import aiohttp
from support.ports import free_port


async def wait_healthy(url: str, timeout: float) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/healthz") as response:
                    return await response.json()
            except aiohttp.ClientConnectionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)  # polling a condition with a deadline


async def test_serve_answers_health_and_stops_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat",
        "serve",
        "--port",
        str(port),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        health = await wait_healthy(f"http://127.0.0.1:{port}", timeout=20)
        assert health["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_reports_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "raftchat",
            "serve",
            "--port",
            str(port),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr.decode()


async def test_serve_takes_its_limits_from_the_config_file_and_flags(tmp_path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"[server]\nport = {port}\nmax_connections_per_address = 1\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat",
        "serve",
        "--config",
        str(config),
        "--set",
        "idle_timeout=30",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", timeout=20)
        # One connection per address: a second one, while the first is open, is refused.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 503
            assert response.headers["X-Raftchat-Error"] == "too_many_connections"
        writer.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_refuses_a_bad_limit_with_the_key() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftchat",
        "serve",
        "--set",
        "max_channels=0",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "server.max_channels must be a positive integer, got 0" in stderr.decode()
