"""The scenarios: healthy runs (with hard negatives) and injected pathologies, each a real CPU training.

`kinds` are the pathologies the scenario is built to show; the labeller must confirm each one from the
written data (tests/test_detection_quality.py), and a healthy scenario must satisfy no criterion at all.
Architectures, optimisers, writer libraries and tag styles vary so no rule can key on one convention.
"""

from __future__ import annotations

from dataclasses import dataclass

from .training import Recipe


@dataclass(frozen=True)
class Scenario:
    name: str
    recipe: Recipe
    style: str  # key of styles.STYLES
    writer: str  # "tensorboardX" | "torch"
    kinds: tuple[str, ...]  # () = healthy
    note: str


DIV, OVER, VAN, EXP = "divergence", "overfitting", "vanishing_gradients", "exploding_gradients"
TBX, TORCH = "tensorboardX", "torch"
R = Recipe

SCENARIOS: tuple[Scenario, ...] = (
    # --- healthy, including hard negatives ------------------------------------------------------------
    Scenario("healthy_sgd_noisy_bs8", R(hidden=(64,), lr=0.05, batch_size=8, seed=0), "slash", TBX, (),
             "batch 8 SGD: per-step loss jumps by 10x between batches"),
    Scenario("healthy_warmup_cosine", R(hidden=(128, 64), lr=0.2, momentum=0.9, schedule=("warmup_cosine", 30), seed=1),
             "flat", TORCH, (), "LR warm-up then cosine decay: grad norm rises during warm-up"),
    Scenario("healthy_adam_cnn", R(data="digits_img", model="cnn", hidden=(2,), optimizer="adam", lr=3e-3, seed=2),
             "underscore", TBX, (), "small CNN on 8x8 digits with Adam"),
    Scenario("healthy_val_plateau", R(data="teacher_reg", hidden=(32,), act="tanh", optimizer="adam", lr=3e-3, seed=3),
             "tf", TORCH, (), "noisy teacher targets: val loss plateaus at the noise floor and does not rise"),
    Scenario("healthy_early_converge_flat", R(data="teacher_cls", hidden=(64,), optimizer="adam", lr=1e-2, seed=4),
             "slash", TORCH, (), "separable task: converges early, then a flat near-zero loss with relative jitter"),
    Scenario("healthy_grad_clip_hf", R(hidden=(64, 64), lr=0.3, momentum=0.9, clip=1.0, seed=5), "hf", TBX, (),
             "clipping at 1.0 in use: pre-clip grad norm (what HF logs) sits above the clip"),
    Scenario("healthy_restart_purge", R(hidden=(64,), lr=0.1, restart=(100, 150), purge_on_restart=True, seed=6),
             "slash", TORCH, (), "crash at 150, resume from checkpoint 100 with purge_step: steps go back"),
    Scenario("healthy_restart_no_purge", R(data="digits_img", model="cnn", hidden=(2,), optimizer="adam", lr=3e-3,
                                           restart=(80, 150), seed=7), "lightning", TBX, (),
             "resume from checkpoint 80 after 150 without purge: the old tail stays in the first file"),
    Scenario("healthy_gru_lightning", R(data="seq", model="rnn", act="gru", hidden=(24,), optimizer="adam", lr=1e-2, seed=8),
             "lightning", TORCH, (), "GRU on a sequence-sum task"),
    Scenario("healthy_deep_batchnorm", R(hidden=(32,) * 10, batchnorm=True, optimizer="adam", lr=3e-3, seed=9),
             "flat", TBX, (), "10-layer ReLU MLP with BatchNorm: deep but well-conditioned"),
    Scenario("healthy_dropout", R(hidden=(256,), dropout=0.5, optimizer="adam", lr=1e-3, seed=10), "tf", TBX, (),
             "dropout 0.5: validation loss sits below training loss"),
    Scenario("healthy_keras_dirs", R(hidden=(64,), optimizer="adam", lr=1e-3, seed=11), "keras", TORCH, (),
             "Keras layout: train/ and validation/ sibling runs, epoch_loss per epoch"),
    Scenario("healthy_step_decay", R(hidden=(64,), lr=0.2, momentum=0.5, schedule=("step", 150, 0.1), seed=12),
             "underscore", TORCH, (), "step LR decay at 150: the loss drops abruptly"),
    Scenario("healthy_hf_warmup", R(hidden=(64,), optimizer="adam", lr=3e-3, schedule=("warmup_cosine", 50), seed=13),
             "hf", TORCH, (), "HF-style logging every 5 steps with warm-up"),
    # --- divergence: LR too high (NaN/Inf, finite blow-up, spike) ---------------------------------------
    Scenario("diverge_sgd_ramp_nan", R(hidden=(64, 64), lr=0.05, momentum=0.9, schedule=("ramp", 5.0), seed=20),
             "slash", TBX, (DIV,), "LR ramps far too high: loss turns NaN"),
    Scenario("diverge_hf_nan_filter", R(data="teacher_reg", hidden=(64, 64), act="tanh", lr=0.01, schedule=("ramp", 1.0),
                                        seed=21), "hf", TORCH, (DIV,),
             "HF logging_nan_inf_filter: once every step is NaN the logged loss is 0.0 beside a NaN grad_norm"),
    Scenario("diverge_adam_spike", R(hidden=(64, 64), optimizer="adam", lr=1e-3, schedule=("spike", 180, 5, 300.0), seed=22),
             "flat", TORCH, (DIV,), "5 steps at 300x LR: finite loss spike, partial recovery"),
    Scenario("diverge_adam_jump_finite", R(hidden=(64, 64), optimizer="adam", lr=1e-3, schedule=("step", 150, 300.0), seed=23),
             "underscore", TBX, (DIV,), "LR jumps 300x at 150 and stays: finite blow-up"),
    Scenario("diverge_cnn_jump", R(data="digits_img", model="cnn", hidden=(2,), optimizer="adam", lr=1e-3,
                                   schedule=("step", 100, 300.0), seed=24), "tf", TBX, (DIV,),
             "CNN, Adam LR jumps 300x at 100"),
    Scenario("diverge_rnn_ramp", R(data="seq", model="rnn", act="relu", hidden=(32,), lr=0.01, schedule=("ramp", 2.0), seed=25),
             "lightning", TORCH, (DIV,), "ReLU RNN, LR ramp too high: recovering spikes, then NaN (a ramp to 1.0 only "
             "spiked and recovered, which issue #10 says is not divergence)"),
    Scenario("diverge_gru_jump", R(data="seq", model="rnn", act="gru", hidden=(32,), optimizer="adam", lr=3e-3,
                                   schedule=("step", 100, 300.0), seed=26), "slash", TBX, (DIV,),
             "GRU, Adam LR jumps 300x at 100"),
    Scenario("diverge_regression_explode", R(data="teacher_reg", hidden=(64, 64), act="tanh", lr=0.01, schedule=("ramp", 1.0),
                                             seed=26), "lightning", TORCH, (DIV, EXP),
             "MSE regression, LR ramp: gradient norm grows 1e18x while the loss overflows"),
    Scenario("diverge_keras_dirs", R(data="teacher_reg", hidden=(64, 64), act="tanh", lr=0.01, schedule=("ramp", 1.0),
                                     seed=27), "keras", TBX, (DIV,), "Keras layout, per-epoch losses overflow to NaN"),
    Scenario("diverge_regression_jump_hf", R(data="teacher_reg", hidden=(32,) * 4, optimizer="adam", lr=1e-3,
                                             schedule=("step", 120, 300.0), seed=28), "hf", TBX, (DIV,),
             "regression, Adam LR jumps 300x at 120: finite blow-up"),
    Scenario("overfit_mlp_30", R(n_train=30, hidden=(256, 256), optimizer="adam", lr=5e-3, seed=30),
             "slash", TBX, (OVER,), "30 digits, 2x256 MLP"),
    Scenario("overfit_cnn_50", R(data="digits_img", n_train=50, model="cnn", hidden=(3,), optimizer="adam", lr=5e-3, seed=31),
             "flat", TORCH, (OVER,), "50 digits, CNN"),
    Scenario("overfit_mlp2_50", R(n_train=50, hidden=(256, 256), optimizer="adam", lr=3e-3, seed=32),
             "underscore", TBX, (OVER,), "50 digits, 2x256 MLP"),
    Scenario("overfit_keras_dirs", R(n_train=40, hidden=(256, 256), optimizer="adam", lr=3e-3, seed=33),
             "keras", TBX, (OVER,), "Keras layout, 40 digits"),
    Scenario("overfit_hf", R(n_train=60, hidden=(512,), optimizer="adam", lr=5e-3, seed=34),
             "hf", TORCH, (OVER,), "HF-style logging, 60 digits"),
    Scenario("overfit_lightning", R(n_train=30, hidden=(256, 256), optimizer="adam", lr=5e-3, seed=35),
             "lightning", TORCH, (OVER,), "Lightning-style, 30 digits"),
    Scenario("overfit_torch_slash", R(n_train=30, hidden=(256, 256), optimizer="adam", lr=5e-3, seed=38),
             "slash", TORCH, (OVER,), "torch writer, 30 digits"),
    Scenario("overfit_teacher_cls", R(data="teacher_cls", n_train=40, hidden=(256, 256), optimizer="adam", lr=3e-3,
                                      seed=36), "tf", TORCH, (OVER,), "40 teacher-labelled points"),
    Scenario("overfit_sgd_momentum", R(n_train=30, hidden=(128, 128), lr=0.1, momentum=0.9, seed=37),
             "slash", TORCH, (OVER,), "30 digits, SGD with momentum"),
    # --- vanishing gradients: deep sigmoid/tanh nets, standard init -------------------------------------
    Scenario("vanish_sigmoid15", R(hidden=(32,) * 15, act="sigmoid", lr=0.1, seed=40), "slash", TBX, (VAN,),
             "15 sigmoid layers, PyTorch default init"),
    Scenario("vanish_sigmoid12_adam", R(hidden=(64,) * 12, act="sigmoid", optimizer="adam", lr=1e-3, seed=41),
             "flat", TORCH, (VAN,), "12 sigmoid layers, Adam"),
    Scenario("vanish_tanh20", R(hidden=(32,) * 20, act="tanh", lr=0.05, seed=42), "underscore", TBX, (VAN,),
             "20 tanh layers, default init"),
    Scenario("vanish_sigmoid_cnn", R(data="digits_img", model="cnn", hidden=(10,), act="sigmoid", lr=0.1, seed=43),
             "tf", TORCH, (VAN,), "10 sigmoid conv layers"),
    Scenario("vanish_sigmoid_regression", R(data="teacher_reg", hidden=(16,) * 18, act="sigmoid", lr=0.05, seed=44),
             "tf", TBX, (VAN,), "18 sigmoid layers on regression"),
    Scenario("vanish_lightning_norms", R(hidden=(32,) * 15, act="sigmoid", optimizer="adam", lr=1e-3, seed=45),
             "lightning", TORCH, (VAN,), "15 sigmoid layers; only per-layer grad-norm scalars logged"),
    Scenario("vanish_sigmoid20_cls", R(data="teacher_cls", hidden=(32,) * 20, act="sigmoid", optimizer="adam", lr=1e-3,
                                       seed=46), "slash", TORCH, (VAN,), "20 sigmoid layers, teacher task"),
    Scenario("vanish_tanh25_adam", R(hidden=(32,) * 25, act="tanh", optimizer="adam", lr=1e-3, seed=47),
             "flat", TBX, (VAN,), "25 tanh layers, Adam"),
    # --- exploding gradients: large-init deep tanh nets (chaotic regime), LR growth ---------------------
    Scenario("explode_tanh16_init3", R(hidden=(32,) * 16, act="tanh", init_gain=3.0, optimizer="adam", lr=3e-4, seed=50),
             "slash", TBX, (EXP,), "16 tanh layers at 3x He init: gradients grow toward the input"),
    Scenario("explode_tanh14_init35", R(hidden=(48,) * 14, act="tanh", init_gain=3.5, optimizer="adam", lr=1e-3, seed=51),
             "flat", TORCH, (EXP,), "14 tanh layers at 3.5x He init"),
    Scenario("explode_tanh_cnn", R(data="digits_img", model="cnn", hidden=(12,), act="tanh", init_gain=3.5, optimizer="adam",
                                   lr=1e-3, seed=52), "underscore", TBX, (EXP,), "12 tanh conv layers at 3.5x He init"),
    Scenario("explode_lightning_norms", R(hidden=(32,) * 16, act="tanh", init_gain=3.0, optimizer="adam", lr=3e-4, seed=53),
             "lightning", TORCH, (EXP,), "large-init tanh net; only per-layer grad-norm scalars logged"),
    Scenario("explode_hf_lr_ramp", R(data="teacher_reg", hidden=(64, 64), act="tanh", lr=0.01, schedule=("ramp", 1.0),
                                     seed=54), "hf", TBX, (EXP, DIV),
             "regression, LR ramp, no clipping: HF grad_norm grows >100x, then the loss overflows"),
    Scenario("explode_tanh18", R(hidden=(24,) * 18, act="tanh", init_gain=3.0, optimizer="adam", lr=3e-4, seed=55),
             "tf", TORCH, (EXP,), "18 narrow tanh layers at 3x He init"),
    Scenario("explode_teacher_tanh", R(data="teacher_cls", hidden=(32,) * 14, act="tanh", init_gain=3.0, optimizer="adam",
                                       lr=3e-4, seed=56), "slash", TORCH, (EXP,), "14 tanh layers at 3x He init, teacher task"),
    # Large-init deep ReLU: no layer ratio singles it out (FINDINGS.md); with SGD it overflows at once.
    Scenario("explode_relu12_init2", R(hidden=(64,) * 12, lr=0.01, init_gain=2.0, seed=57), "lightning", TBX, (EXP, DIV),
             "12 ReLU layers at 2x He init, SGD: loss ~6,000 at step 0, gradients and loss NaN by step 5"),
)

# A second set the rules were not developed against (first scored at 13:40 UTC on the rules of be92661):
# new seeds, widths, depths and style/writer pairings. `bench/detection_quality.py --set heldout`.
HELDOUT: tuple[Scenario, ...] = (
    Scenario("ho_healthy_sgd_tanh_bs16", R(hidden=(128,), act="tanh", lr=0.1, batch_size=16, seed=100), "tf", TBX, (),
             "tanh MLP, batch-16 SGD"),
    Scenario("ho_healthy_adam_cnn3", R(data="digits_img", model="cnn", hidden=(3,), optimizer="adam", lr=2e-3, seed=101),
             "slash", TORCH, (), "3-conv CNN, Adam"),
    Scenario("ho_healthy_gru_hf", R(data="seq", model="rnn", act="gru", hidden=(32,), optimizer="adam", lr=2e-3, seed=102),
             "hf", TBX, (), "GRU with HF-style logging"),
    Scenario("ho_healthy_warmup_lightning", R(hidden=(64, 64), lr=0.1, momentum=0.9, schedule=("warmup_cosine", 40),
                                              seed=103), "lightning", TBX, (), "warm-up + cosine, Lightning norms"),
    Scenario("ho_healthy_regression", R(data="teacher_reg", hidden=(64,), optimizer="adam", lr=1e-3, seed=104),
             "flat", TORCH, (), "teacher regression, ReLU, Adam"),
    Scenario("ho_healthy_keras_restart", R(hidden=(128,), optimizer="adam", lr=1e-3, restart=(60, 120), seed=105),
             "keras", TORCH, (), "Keras layout, crash at 120, resume from 60"),
    Scenario("ho_diverge_tanh_ramp", R(data="teacher_reg", hidden=(32, 32), act="tanh", lr=0.01, schedule=("ramp", 1.5),
                                       seed=110), "underscore", TORCH, (DIV,), "regression, LR ramp"),
    Scenario("ho_diverge_cnn_jump", R(data="digits_img", model="cnn", hidden=(3,), optimizer="adam", lr=1e-3,
                                      schedule=("step", 80, 500.0), seed=111), "flat", TBX, (DIV,), "CNN, LR x500 at 80"),
    Scenario("ho_diverge_gru_spike", R(data="seq", model="rnn", act="gru", hidden=(32,), optimizer="adam", lr=3e-3,
                                       schedule=("spike", 140, 3, 300.0), seed=112), "hf", TORCH, (DIV,),
             "GRU, 3-step LR spike at 140"),
    Scenario("ho_diverge_mlp_ramp", R(hidden=(64,) * 3, act="tanh", lr=0.02, momentum=0.9, schedule=("ramp", 4.0), seed=113),
             "tf", TORCH, (DIV,), "3-layer tanh MLP, momentum, LR ramp"),
    Scenario("ho_overfit_mlp_25", R(n_train=25, hidden=(256, 256), optimizer="adam", lr=5e-3, seed=120), "tf", TBX, (OVER,),
             "25 digits, 2x256 MLP"),
    Scenario("ho_overfit_cnn_40", R(data="digits_img", n_train=40, model="cnn", hidden=(4,), optimizer="adam", lr=5e-3,
                                    seed=121), "lightning", TORCH, (OVER,), "40 digits, 4-conv CNN"),
    Scenario("ho_overfit_teacher_hf", R(data="teacher_cls", n_train=30, hidden=(512, 256), optimizer="adam", lr=3e-3,
                                        seed=122), "hf", TBX, (OVER,), "30 teacher points, HF-style"),
    Scenario("ho_overfit_keras_35", R(n_train=35, hidden=(256, 256), optimizer="adam", lr=5e-3, seed=123), "keras", TORCH,
             (OVER,), "Keras layout, 35 digits"),
    Scenario("ho_vanish_sigmoid14_sgd", R(hidden=(48,) * 14, act="sigmoid", lr=0.05, seed=130), "lightning", TBX, (VAN,),
             "14 sigmoid layers, norms only"),
    Scenario("ho_vanish_sigmoid18_cls", R(data="teacher_cls", hidden=(24,) * 18, act="sigmoid", optimizer="adam", lr=1e-3,
                                       seed=131), "tf", TORCH, (VAN,), "18 sigmoid layers, teacher task"),
    Scenario("ho_vanish_sigmoid_cnn8", R(data="digits_img", model="cnn", hidden=(8,), act="sigmoid", optimizer="adam",
                                         lr=1e-3, seed=132), "flat", TBX, (VAN,), "8 sigmoid conv layers"),
    Scenario("ho_vanish_sigmoid16_reg", R(data="teacher_reg", hidden=(32,) * 16, act="sigmoid", optimizer="adam", lr=1e-3,
                                          seed=133), "underscore", TORCH, (VAN,), "16 sigmoid layers, regression"),
    Scenario("ho_explode_tanh15", R(hidden=(40,) * 15, act="tanh", init_gain=3.2, optimizer="adam", lr=5e-4, seed=140),
             "underscore", TBX, (EXP,), "15 tanh layers at 3.2x He init"),
    Scenario("ho_explode_tanh_cnn12", R(data="digits_img", model="cnn", hidden=(12,), act="tanh", init_gain=3.5,
                                        optimizer="adam", lr=1e-3, seed=141), "lightning", TBX, (EXP,),
             "12 tanh conv layers at 3.5x He init, norms only"),
    Scenario("ho_explode_tanh17_reg", R(data="teacher_reg", hidden=(32,) * 17, act="tanh", init_gain=3.0, optimizer="adam",
                                        lr=3e-4, seed=142), "flat", TORCH, (EXP,), "17 tanh layers at 3x He init, regression"),
    Scenario("ho_explode_lr_ramp", R(data="teacher_reg", hidden=(64, 64), act="tanh", lr=0.01, schedule=("ramp", 1.0),
                                     seed=143), "tf", TBX, (EXP, DIV), "regression, LR ramp without clipping"),
    Scenario("ho_explode_relu16_init15", R(hidden=(64,) * 16, lr=0.01, init_gain=1.5, seed=144), "lightning", TORCH,
             (EXP, DIV), "16 ReLU layers at 1.5x He init, SGD, per-layer norms"),
)
