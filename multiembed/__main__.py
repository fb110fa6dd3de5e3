import sys

from multiembed.cli import main

sys.exit(main())
