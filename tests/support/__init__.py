"""What many tests share: waiting on a condition (:mod:`.waiting`), a free loopback port
(:mod:`.ports`), a clock moved by hand (:mod:`.clocks`), and real headless node
processes (:mod:`.nodes`, on the benchmark's harness). Fixtures are in ``conftest.py``."""
