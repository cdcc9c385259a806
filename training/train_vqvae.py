"""Train a VQ-VAE (the paper's architecture).

    accelerate launch training/train_vqvae.py --config training/configs/<recipe>.yaml --output_dir runs/vqvae

Every flag is documented by `--help`; the loop is `hf_vq.training.Trainer`, with `ImageTrainer` reading the images.
"""

from hf_vq.training import main
from hf_vq.utils.cli import run_script

if __name__ == "__main__":
    run_script(lambda: main("vqvae"))
