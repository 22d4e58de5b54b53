"""Coverage-guided fuzzing of the HTTP/1.1 codec and of the proxy's bytes-in to bytes-out path.

Two targets, each an oracle that raises `InvariantBroken` when an input breaks an invariant:
`codec` (pymesh.http.h1's readers) and `proxy` (DownstreamH1 -> Exchange -> a real loopback
upstream). `python -m tests.fuzz TARGET` runs one under atheris; tests/fuzz/test_fuzz_corpus.py
replays the seed corpus through both without atheris. See README.md.
"""
