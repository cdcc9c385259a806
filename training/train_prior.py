"""Train the prior over code indices (a GPT-2, class-conditional with classifier-free guidance dropout).

    python scripts/encode_dataset.py --vq_model runs/vqgan/model --dataset builtin:digits --label_column label \
        --output_dir runs/digits-codes
    accelerate launch training/train_prior.py --config training/configs/prior_digits.yaml \
        --dataset runs/digits-codes --output_dir runs/prior

Writes model/ (the prior) and pipeline/ (VQ model + prior, `VQImageGenerationPipeline.from_pretrained`). Every flag
is documented by `--help`; the loop is `hf_vq.training.Trainer`, with
`PriorTrainer` reading the codes.
"""

from hf_vq.training import main
from hf_vq.utils.cli import run_script

if __name__ == "__main__":
    run_script(lambda: main("prior"))
