"""Entry points: `python -m launch.<name>`.

Starting one restarts the process once with transparent huge pages for
malloc (`launch/huge_pages.py`: the demo's wall time down by a quarter);
importing the package otherwise (tests, notebooks) changes nothing.
"""

from launch import huge_pages

huge_pages.maybe_restart()
