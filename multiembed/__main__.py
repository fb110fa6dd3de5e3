from multiembed.cli import main
import sys

sys.exit(main())
