"""Official SpecVQGAN files: safe loading, conversion to vgs checkpoints, download by name, export.

- `importer.import_specvqgan(path, out)`: `vgs import specvqgan` (codebook / transformer runs, MelGAN
  generator, Melception, VGGish-ish) -> `out/<stage>.ckpt`;
- `fetch.download_official(names, out)`: `vgs download` (resumable, MD5-checked, safely unpacked, imported);
- `export.export_specvqgan(transformer, run_dir)`: a vgs transformer + codebook in the official layout;
- `safe_load.load_official(path)`: the restricted loader every official file goes through.
"""
