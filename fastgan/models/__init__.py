"""One file per GAN: networks, losses, paper defaults. Empty until the trainer work lands."""
