"""Audio: the one spectrogram definition (and its inverse) and waveform I/O."""
