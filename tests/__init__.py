"""Mainsail's tests, by purpose (see README.md). A package, so that the shared helpers in
`tests.support` are imported like any module, by the tests and by the benchmarks in bench/."""
