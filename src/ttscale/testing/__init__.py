"""Harnesses for tests and benches, not used by ``ttscale run``: real engines started on loopback
(llama.cpp's C++ ``llama-server``, llama-cpp-python's server) and a fault-injecting relay."""
