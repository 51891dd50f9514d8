"""Tools for developing and measuring voxloop: the reference client, the benchmarks, the call simulator."""
