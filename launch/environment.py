"""`python -m launch.environment`: the GLIBC_TUNABLES an entry point runs with.

Prints what `launch/huge_pages.py` gave this process (empty when the
restart was skipped), so a user can see whether entry points get huge pages
here.
"""

import os

if __name__ == "__main__":
  print(os.environ.get("GLIBC_TUNABLES", ""))
