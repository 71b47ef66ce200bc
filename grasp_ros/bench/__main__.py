import sys

from ..cli import main
from ..process_exit import leave

leave(main(["bench", *sys.argv[1:]]))
