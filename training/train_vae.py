"""Train a VAE (beta, free bits).

    accelerate launch training/train_vae.py --config training/configs/<recipe>.yaml --output_dir runs/vae

Every flag is documented by `--help`; the loop is `hf_vq.training.Trainer`, with `ImageTrainer` reading the images.
"""

from hf_vq.training import main
from hf_vq.utils.cli import run_script

if __name__ == "__main__":
    run_script(lambda: main("vae"))
