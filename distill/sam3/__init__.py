"""SAM3 box proposals for R2I (paper P(I)): the object inventory, torchvision-free preprocessing, the proposer, a tiny offline SAM3."""
