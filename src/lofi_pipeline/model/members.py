"""The ensemble member: event fields -> embeddings -> Conv1D -> BiLSTM -> attention -> one
softmax head per predicted field.

Each member reads a window of past events and predicts the next one, so a bidirectional
LSTM over the window never sees the event it predicts. The heads are chained: each field's
head is also given the next event's given fields (its metre) and its fields before its own,
so the sum of the fields' cross-entropies is the NLL of the whole event, and sampling field by
field draws from the joint distribution.
"""
from __future__ import annotations

import os

from ..core.errors import StageError


def configure_tensorflow(threads: int = 0, gpus: bool = False) -> None:
    """Thread counts (0: all cores), whether to use a GPU, deterministic kernels; call before
    TensorFlow runs any op."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    n = threads or os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
        if not gpus:  # the key says CPU: a GPU's kernels would give other weights
            tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        # TensorFlow ran before in this process and keeps what it started with: fine if that is
        # what is asked for now, an error otherwise (the key would record settings not applied).
        now = tf.config.threading.get_intra_op_parallelism_threads()
        if now != n:
            raise StageError(f"TensorFlow already runs with {now} threads in this process and cannot switch to "
                             f"{n} (train.threads); run this stage in a process of its own") from None
    # Deterministic kernels for training and sampling alike: TensorFlow cannot switch them off
    # again, so a process that sampled before it trains (a Ray worker, `lofi evaluate`) would
    # otherwise train to other weights than a fresh one.
    tf.config.experimental.enable_op_determinism()
    if gpus and not tf.config.list_physical_devices("GPU"):
        raise StageError("train.member_gpus > 0, but TensorFlow sees no GPU here (tensorflow-cpu is the default "
                         "install): install a GPU build of TensorFlow where the members train, or set it to 0")


def build_member(field_sizes: dict[str, int], window: int, *, given_fields: tuple[str, ...], embed_dim: int,
                 conv_filters: int, kernel_size: int, lstm_units: int, attention_heads: int, dropout: float,
                 name: str):
    """Past events in (window x field ids), the next event's distribution out: one head per field
    but the `given_fields`, which every head reads and none predicts; each head also reads the
    fields of the next event drawn before it."""
    import keras
    from keras import layers

    fields = list(field_sizes)
    events = keras.Input(shape=(window, len(fields)), dtype="int32", name="events")
    # Each field has its own embedding; an event is the sum of its fields' vectors.
    embedded = [layers.Embedding(size, embed_dim, name=f"embed_{field}")(events[:, :, i])
                for i, (field, size) in enumerate(field_sizes.items())]
    x = layers.Add(name="event_embedding")(embedded)
    x = layers.Conv1D(conv_filters, kernel_size, padding="causal", activation="relu", name="conv")(x)
    x = layers.Dropout(dropout, name="conv_dropout")(x)
    x = layers.Bidirectional(layers.LSTM(lstm_units, return_sequences=True), name="bilstm")(x)
    # The newest step asks the whole window what matters for the next event.
    query = layers.Cropping1D((window - 1, 0), name="newest_step")(x)
    attended = layers.MultiHeadAttention(attention_heads, key_dim=max(8, lstm_units // attention_heads),
                                         dropout=dropout, name="attention")(query, x)
    x = layers.LayerNormalization(name="attention_norm")(layers.Add(name="residual")([query, attended]))
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    context = layers.Dense(2 * embed_dim, activation="relu", name="dense")(x)
    trunk = keras.Model(events, context, name="trunk")

    # The heads factorise the event as p(bar | metre) p(position | metre, bar) p(root | ...) ...:
    # a chord and a melody note each get a time that suits them (as in compound-word models),
    # where independent heads would pair a melody note's 16th with a chord.
    context_in = keras.Input(shape=(2 * embed_dim,), name="context")
    given = keras.Input(shape=(len(fields),), dtype="int32", name="given")

    def given_embedding(field: str):
        embedding = layers.Embedding(field_sizes[field], embed_dim // 2, name=f"given_{field}")
        return embedding(given[:, fields.index(field)])
    heads, features = {}, [context_in, *(given_embedding(f) for f in given_fields)]
    for field in fields:
        if field in given_fields:
            continue
        h = features[0] if len(features) == 1 else layers.Concatenate(name=f"{field}_inputs")(features)
        h = layers.Dense(2 * embed_dim, activation="relu", name=f"{field}_hidden")(h)
        heads[field] = layers.Dense(field_sizes[field], activation="softmax", name=field)(h)
        features.append(given_embedding(field))
    head_model = keras.Model([context_in, given], heads, name="heads")

    target = keras.Input(shape=(len(fields),), dtype="int32", name="target")
    outputs = head_model([trunk(events), target])
    model = keras.Model({"events": events, "target": target},
                        {field: layers.Identity(name=field)(outputs[field]) for field in heads}, name=name)
    return model  # to train it, compile_member: a member read to play needs no optimiser


# What stays fixed when a member fine-tunes from the base (train.adapt): "all" adapts every
# layer; "upper" keeps the embeddings, the convolution and the BiLSTM (what a window sounds
# like) and adapts the attention and the heads; "heads" adapts only the heads.
FROZEN = {"all": (), "upper": ("embed_", "conv", "bilstm"),
          "heads": ("embed_", "conv", "bilstm", "attention", "dense")}


def compile_member(model, learning_rate: float, adapt: str) -> None:
    """Adam with clipped gradients, a cross-entropy per head; layers `adapt` leaves out are frozen."""
    import keras
    frozen = FROZEN[adapt]
    for layer in model.get_layer("trunk").layers:
        layer.trainable = not layer.name.startswith(frozen)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0),
                  loss={field: "sparse_categorical_crossentropy" for field in model.output_names},
                  metrics={field: ["sparse_categorical_accuracy"] for field in model.output_names})


def model_inputs(x, y) -> dict:
    """A member's inputs: the past events and the next event (each head sees the fields before its own)."""
    return {"events": x, "target": y}
