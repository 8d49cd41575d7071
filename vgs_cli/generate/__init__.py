"""Inference: video -> features -> codes (GPT) -> mel (codebook) -> waveform (vocoder); batch mode and the codec."""
