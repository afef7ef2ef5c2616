import os
import sys

# torch's OpenMP workers busy-wait after each parallel op and, on small machines, take the cores
# our CPU kernels and the peers need (see bench/README.md). The policy is read when torch loads
# libgomp, which `import mentor3ad_ext` has already done, so re-run once with it set.
# OMP_WAIT_POLICY=ACTIVE (or any explicit value) keeps the environment as it is.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    # sys.orig_argv (3.10+) keeps interpreter flags such as -X or -W.
    argv = getattr(sys, "orig_argv", None) or [sys.executable, "-m", "mentor3ad_ext.bench", *sys.argv[1:]]
    os.execv(sys.executable, argv)

from ._cli import main  # noqa: E402

raise SystemExit(main())
