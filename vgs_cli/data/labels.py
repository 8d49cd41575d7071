"""Class lists the paper's datasets and models share (VGGSound's 309 come from its CSV, see prepare/sources).

Class index = position in the sorted list of class names, as in the reference (`sorted(set(...))` in
specvqgan/data/vas.py): VAS baby 0, cough 1, dog 2, drum 3, fireworks 4, gun 5, hammer 6, sneeze 7.
"""

VAS_CLASSES: tuple[str, ...] = ("baby", "cough", "dog", "drum", "fireworks", "gun", "hammer", "sneeze")
