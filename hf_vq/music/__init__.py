"""Music as token sequences: MusicVAE's monophonic melody encoding, MIDI files and piano-roll pictures.

Imports only `hf_vq.utils` and third-party packages; music21 and PIL are imported inside the functions that use them.
"""

from .encoding import (
    MAX_PITCH,
    MELODY_ERROR_REASONS,
    MIN_PITCH,
    NO_EVENT,
    NOTE_OFF,
    STEPS_PER_QUARTER,
    VOCAB_SIZE,
    MelodyError,
    mean_pitch,
    melody_to_tokens,
    note_density,
    note_spans,
    piano_roll,
    pickup_steps,
    pitch_to_token,
    token_to_pitch,
    tokens_to_melody,
    tokens_to_midi,
)

__all__ = [
    "MAX_PITCH",
    "MELODY_ERROR_REASONS",
    "MIN_PITCH",
    "NOTE_OFF",
    "NO_EVENT",
    "STEPS_PER_QUARTER",
    "VOCAB_SIZE",
    "MelodyError",
    "mean_pitch",
    "melody_to_tokens",
    "note_density",
    "note_spans",
    "piano_roll",
    "pickup_steps",
    "pitch_to_token",
    "token_to_pitch",
    "tokens_to_melody",
    "tokens_to_midi",
]
