"""A stand-in for the real indexer (rapd.index): progress on stderr, a JSON result on stdout.

It writes a log file in its working directory (the run's results folder) and reports exactly
the argv it was given, so the tests can show that file names reach it as
data and never as shell code. An image whose name starts with ``wait`` makes it block until
the test writes to the FIFO ``release`` beside that image (a long run, without sleeping); one
whose name starts with ``say_`` has the rest of its name printed as a progress line.
"""

import json
import os
import sys

args = sys.argv[1:]
files = args[args.index("--") + 1 :] if "--" in args else []
for step in (1, 2, 3):
    print(f"indexing step {step}/3", file=sys.stderr, flush=True)
for name in map(os.path.basename, files):
    if name.startswith("say_"):  # a progress line chosen by the test: the rest of the name
        print(name[4:], file=sys.stderr, flush=True)
if files and os.path.basename(files[0]).startswith("wait"):
    with open(os.path.join(os.path.dirname(files[0]), "release")) as fifo:
        fifo.read()
with open("fake_indexer.log", "w") as log:  # what an indexer writes beside itself
    log.write("indexed\n")
result = {
    "argv": args,
    "files": files,
    "cwd": os.getcwd(),
    "home": os.environ.get("HOME", ""),
    "umask": os.umask(0o077),
    "uid": os.getuid(),
    "env": sorted(os.environ),
}
print(json.dumps(result))
