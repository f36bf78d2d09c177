"""Test set-up shared by every test under tests/.

The modules in library/ import their helpers the way Ansible ships them, as
`ansible.module_utils.<name>`. Here the project's module_utils/ is added to
that package's search path, so tests import and exercise the very files that
run on hosts (`from ansible.module_utils.vllm_tuning import ...`), and
library/ is put on sys.path so a module's functions can be imported too.
"""

import sys
from pathlib import Path

import ansible.module_utils

REPO = Path(__file__).resolve().parent.parent
ansible.module_utils.__path__.append(str(REPO / "module_utils"))
sys.path.insert(0, str(REPO / "library"))
