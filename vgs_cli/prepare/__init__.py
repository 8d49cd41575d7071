"""Stage 1: videos -> self-describing HDF5 shards (mel, features, waveform, label); `sources/` knows the paper's datasets."""
