"""Train a plain, denoising or k-sparse autoencoder.

    accelerate launch training/train_autoencoder.py --config <recipe>.yaml --output_dir runs/autoencoder

Every flag is documented by `--help`; the loop is `hf_vq.training.Trainer`, with `ImageTrainer` reading the images.
"""

from hf_vq.training import main
from hf_vq.utils.cli import run_script

if __name__ == "__main__":
    run_script(lambda: main("autoencoder"))
