"""The front ends over a running node: ``join`` (with the TUI or headless), the demo,
node child processes, and what they share: the ``/command`` grammar and log set-up."""
