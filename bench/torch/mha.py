"""PyTorch versions of the four MHA models of the modarch lab, for speed comparisons.

The models have the layers and parameter counts of lib/models/mha.ts, with D the token
dimension, A the attention dimension, R rules, H = 2R heads of size d = A / H:

- token encoder Linear(in, D)-ReLU-Linear(D, D), in = 5R (search version 1) or 7R (version 2);
- query, key and value Linear(D, A). No token attends to itself, because the diagonal of the
  scores is -inf before the softmax, and scores are scaled by d^-0.5;
- monolithic: [heads, Linear(D, d) of the token] -> Linear(d (H + 1), 2D)-ReLU-Linear(2D, D);
- modular, modular-op, gt-modular: module m reads heads 2m, 2m + 1 and slice m of a
  Linear(D, d R) token projection, through group linear layers 3d -> I -> D (+1 score logit
  for modular), with I from `intermediate_size`. Module outputs are summed with weights p:
  softmax of the score logits (modular), softmax of Linear(R, d)-ReLU-Linear(d, R) on the
  one-hot rule (modular-op), or the one-hot rule (gt-modular);
- decoder Linear(D, D)-ReLU-Linear(D, 1) on every token.

The code is written plainly, one batched product per group layer; it is not tuned.
Only torch is needed. Example:

    model = build_model("modular", rules=4, encoder_dim=64, hidden_dim=256)
    inputs, rules, targets = make_batch(4, batch_size=256)
    output, module_weights = model(inputs, rules)   # [256, 10, 1], [256, 10, 4]
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_KINDS = ("monolithic", "modular", "modular-op", "gt-modular")
HEADS_PER_MODULE = 2
FEATURES_PER_RULE = {1: 4, 2: 6}


def intermediate_size(encoder_dim, hidden_dim, rules):
    """Return the hidden size I of the modules' group layers that matches Monolithic's parameters.

    I = floor(2D (R H (A + D) + A) / (R (A (H + 1) + R H D))) with H = 2 heads per module.
    """
    D, A, R, H = encoder_dim, hidden_dim, rules, HEADS_PER_MODULE
    return (2 * D * (R * H * (A + D) + A)) // (R * (A * (H + 1) + R * H * D))


def two_layer(inputs, hidden, outputs):
    """Return Linear(inputs, hidden)-ReLU-Linear(hidden, outputs)."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class GroupLinear(nn.Module):
    """R independent linear maps, one per module, with PyTorch's Linear initialization.

    weight [R, inputs, outputs], bias [R, outputs]. Input [tokens, R, inputs] ->
    output [tokens, R, outputs].
    """

    def __init__(self, modules, inputs, outputs):
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(modules, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(modules, outputs).uniform_(-bound, bound))

    def forward(self, x):
        return torch.bmm(x.transpose(0, 1), self.weight).transpose(0, 1) + self.bias


class MhaModel(nn.Module):
    """Encoder, self-masked attention, core and decoder of one of the four model kinds."""

    def __init__(self, kind, rules, encoder_dim, hidden_dim, search_version=1):
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"Invalid model kind {kind!r}. Expected one of {MODEL_KINDS}.")
        if search_version not in FEATURES_PER_RULE:
            raise ValueError(f"Invalid search_version {search_version!r}. Expected 1 or 2.")
        heads = HEADS_PER_MODULE * rules
        if hidden_dim % heads != 0:
            raise ValueError(f"Invalid hidden_dim {hidden_dim}: expected a multiple of 2 * rules = {heads}.")
        self.kind = kind
        self.rules = rules
        self.heads = heads
        self.head_dim = hidden_dim // heads
        D, A, d = encoder_dim, hidden_dim, self.head_dim

        self.encoder = two_layer((FEATURES_PER_RULE[search_version] + 1) * rules, D, D)
        self.query = nn.Linear(D, A)
        self.key = nn.Linear(D, A)
        self.value = nn.Linear(D, A)
        if kind == "monolithic":
            self.token_projection = nn.Linear(D, d)
            self.core = two_layer(d * (heads + 1), 2 * D, D)
        else:
            size = intermediate_size(D, A, rules)
            if size < 1:
                raise ValueError(f"Invalid encoder_dim {D}: the module hidden size would be {size} (A = {A}, R = {rules}).")
            self.token_projection = nn.Linear(D, d * rules)
            self.layer1 = GroupLinear(rules, d * (HEADS_PER_MODULE + 1), size)
            self.layer2 = GroupLinear(rules, size, D + 1 if kind == "modular" else D)
            if kind == "modular-op":
                self.scorer = two_layer(rules, d, rules)
        self.decoder = two_layer(D, D, 1)

    def attend(self, encoded):
        """Return the attended values [batch, length, H, d] of encoded tokens [batch, length, D]."""
        batch, length, _ = encoded.shape
        split = lambda x: x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        query, key, value = split(self.query(encoded)), split(self.key(encoded)), split(self.value(encoded))
        scores = torch.matmul(query, key.transpose(-1, -2)) * self.head_dim ** -0.5
        self_mask = torch.eye(length, dtype=torch.bool, device=encoded.device)
        weights = F.softmax(scores.masked_fill(self_mask, float("-inf")), dim=-1)
        return torch.matmul(weights, value).transpose(1, 2)

    def forward(self, inputs, rules):
        """Return (logits [batch, length, 1], module weights [batch, length, R] or None).

        `inputs` is [batch, length, F + R]: features, then onehot(rule). `rules` [batch, length]
        is accepted for a uniform interface. The rule-aware kinds read the one-hot context inside
        `inputs`, which equals onehot(rules).
        """
        batch, length, _ = inputs.shape
        tokens = batch * length
        encoded = self.encoder(inputs)
        heads = self.attend(encoded)

        if self.kind == "monolithic":
            features = self.core(torch.cat((heads.reshape(batch, length, -1), self.token_projection(encoded)), dim=-1))
            return self.decoder(features), None

        # Module m owns heads 2m and 2m + 1, which sit next to each other in `heads`.
        module_heads = heads.reshape(tokens, self.rules, HEADS_PER_MODULE * self.head_dim)
        module_projection = self.token_projection(encoded).reshape(tokens, self.rules, self.head_dim)
        outputs = self.layer2(F.relu(self.layer1(torch.cat((module_heads, module_projection), dim=-1))))

        context = inputs[..., -self.rules:].reshape(tokens, self.rules)
        if self.kind == "modular":
            module_weights = F.softmax(outputs[..., -1], dim=-1)
            outputs = outputs[..., :-1]
        elif self.kind == "modular-op":
            module_weights = F.softmax(self.scorer(context), dim=-1)
        else:
            module_weights = context
        features = (outputs * module_weights.unsqueeze(-1)).sum(dim=1)
        output = self.decoder(features).view(batch, length, 1)
        return output, module_weights.view(batch, length, self.rules)


def build_model(kind, rules, encoder_dim, hidden_dim, search_version=1):
    """Build an MHA classification model of `kind`, one of MODEL_KINDS."""
    return MhaModel(kind, rules, encoder_dim, hidden_dim, search_version=search_version)


def make_batch(rules, batch_size, length=10, search_version=1, data_seed=0):
    """Return (inputs [batch, length, F + R], rules [batch, length], targets [batch, length, 1]).

    This is the classification version of the MHA task. Features are N(0, 1), except that in
    version 2 the two search keys of each rule are normalized to unit 2-D vectors. Each token
    draws a uniform rule r, and its label is 1[a_r v1 + b_r v2 >= 0], where v1 and v2 are values
    of rule r read from the other tokens with the closest keys (by absolute difference in
    version 1, by dot product in version 2, ties to the lowest index). The coefficients
    a, b ~ N(0, 1) come from `data_seed`. The samples come from torch's global generator, so
    they are fresh on every call. The draw order differs from lib/tasks/mha.ts, so the samples
    are not the same.
    """
    per_rule = FEATURES_PER_RULE[search_version]
    coefficients = torch.randn(rules, 2, generator=torch.Generator().manual_seed(data_seed))
    features = torch.randn(batch_size, length, rules, per_rule)
    if search_version == 2:
        keys = features[..., :4].reshape(batch_size, length, rules, 2, 2)
        features[..., :4] = (keys / keys.norm(dim=-1, keepdim=True)).reshape(batch_size, length, rules, 4)
    rule_ids = torch.randint(0, rules, (batch_size, length))

    # Each token's own rule block, and that block of every token of its sequence:
    # own [batch, length, per_rule], seen [batch, length (token), length (other), per_rule].
    index = rule_ids[:, :, None, None].expand(batch_size, length, 1, per_rule)
    own = features.gather(2, index).squeeze(2)
    seen = features[:, None].expand(batch_size, length, length, rules, per_rule)
    seen = seen.gather(3, rule_ids[:, :, None, None, None].expand(batch_size, length, length, 1, per_rule)).squeeze(3)

    self_mask = torch.eye(length, dtype=torch.bool)
    values = []
    for key in range(2):
        if search_version == 1:
            closeness = -(seen[..., key] - own[:, :, None, key]).abs()
        else:
            closeness = (seen[..., 2 * key:2 * key + 2] * own[:, :, None, 2 * key:2 * key + 2]).sum(dim=-1)
        # argmax returns the first maximum, so ties go to the lowest index.
        partner = closeness.masked_fill(self_mask, float("-inf")).argmax(dim=-1)
        values.append(seen[..., per_rule - 2 + key].gather(2, partner[..., None]).squeeze(2))
    chosen = coefficients[rule_ids]
    targets = ((chosen[..., 0] * values[0] + chosen[..., 1] * values[1]) >= 0).to(features.dtype)

    context = F.one_hot(rule_ids, rules).to(features.dtype)
    inputs = torch.cat((features.reshape(batch_size, length, -1), context), dim=-1)
    return inputs, rule_ids, targets.unsqueeze(-1)


def parameter_count(model):
    """Return the number of trainable parameter values of `model`."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
