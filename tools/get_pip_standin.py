"""Stand-in for get-pip.py, which ansible-test downloads to put pip into its virtualenvs.

ansible-test fetches get-pip.py from its own file server, which is not reachable
from every machine (PyPI is).  It looks for the script in
~/.ansible/test/cache/get_pip_<version>.py first; tools/sanity.sh puts this file
there.  Like get-pip.py it installs the pip named on the command line into the
running interpreter's environment: it starts from the pip bundled with CPython
(ensurepip) and lets that pip fetch the requested one from PyPI.
"""

import subprocess
import sys

FLAGS = {"--no-setuptools", "--no-wheel"}
args = [arg for arg in sys.argv[1:] if arg not in FLAGS]
# In a child process: ensurepip.bootstrap() would leave PIP_CONFIG_FILE=/dev/null
# in this process's environment and so hide the machine's pip settings (CA bundle).
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])
if "--no-setuptools" in sys.argv:
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"])
