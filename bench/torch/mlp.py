"""PyTorch versions of the four MLP models of the modarch lab, for speed comparisons.

The models have the layers and parameter counts of lib/models/mlp.ts:

- a value encoder Linear(1, e)-ReLU-Linear(e, e), shared by x1 and x2, and a context encoder
  Linear(R, e)-ReLU-Linear(e, e) of the one-hot rule. The three embeddings are concatenated
  (3e);
- monolithic: Linear(3e, h)-ReLU-Linear(h, h);
- modular, modular-op, gt-modular: R modules Linear(3e, h/R)-ReLU-Linear(h/R, h [+1]) whose
  outputs are summed with weights p: a softmax of each module's extra score unit (modular), a
  softmax of Linear(e, R) on the context embedding (modular-op), or onehot(rule) (gt-modular);
- decoder Linear(h, e)-ReLU-Linear(e, 1).

The R first layers run as one Linear(3e, h), because every module reads the same input. The
second layers are one group linear layer, weight [R, h/R, out] and bias [R, out]. By default
(`packed=True`) the module outputs are mixed before the product,
sum_m p_m (a_m W_m + b_m) = (p-scaled a) W + p B, as lib/models/mlp.ts does: one
[batch, h] x [h, h] product. With `packed=False` every module runs its own product (one
batched matmul) and the outputs are mixed after it. Measured with step.py (one thread, R=8,
e=64, h=256, batch 256, a 2-core AMD EPYC VM), a Modular step took 10.3 ms grouped against
5.3 ms packed, and a GT-Modular step 6.0 ms against 4.8 ms.

Only torch is needed. Example:

    model = build_model("modular", rules=8, encoder_dim=64, hidden_dim=256)
    inputs, rules, targets = make_batch(8, batch_size=256)
    output, module_weights = model(inputs, rules)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_KINDS = ("monolithic", "modular", "modular-op", "gt-modular")


def encoder(inputs, width):
    """Return Linear(inputs, width)-ReLU-Linear(width, width)."""
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width))


class GroupLinear(nn.Module):
    """R independent linear maps, one per module, with PyTorch's Linear initialization.

    weight [R, inputs, outputs], bias [R, outputs]. Input [batch, R, inputs] ->
    output [batch, R, outputs].
    """

    def __init__(self, modules, inputs, outputs):
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(modules, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(modules, outputs).uniform_(-bound, bound))

    def forward(self, x):
        return torch.bmm(x.transpose(0, 1), self.weight).transpose(0, 1) + self.bias


class MlpModel(nn.Module):
    """Encoders, core and decoder of one of the four model kinds (classification: one logit)."""

    def __init__(self, kind, rules, encoder_dim, hidden_dim, packed=True):
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"Invalid model kind {kind!r}. Expected one of {MODEL_KINDS}.")
        if kind != "monolithic" and hidden_dim % rules != 0:
            raise ValueError(f"Invalid hidden_dim {hidden_dim}: {kind} models need a multiple of the number of rules ({rules}).")
        self.kind = kind
        self.rules = rules
        self.packed = packed
        self.module_width = hidden_dim // rules
        e, h = encoder_dim, hidden_dim

        self.value_encoder = encoder(1, e)
        self.context_encoder = encoder(rules, e)
        if kind == "monolithic":
            self.core = nn.Sequential(nn.Linear(3 * e, h), nn.ReLU(), nn.Linear(h, h))
        else:
            self.first_layers = nn.Linear(3 * e, h)
            self.second_layers = GroupLinear(rules, self.module_width, h + 1 if kind == "modular" else h)
            if kind == "modular-op":
                self.scorer = nn.Linear(e, rules)
        self.decoder = nn.Sequential(nn.Linear(h, e), nn.ReLU(), nn.Linear(e, 1))

    def forward(self, inputs, rules):
        """Return (logits [batch, 1], module weights [batch, R] or None).

        `inputs` is [batch, 2 + R]: x1, x2, then onehot(rule). `rules` [batch] is accepted for
        a uniform interface; gt-modular reads the one-hot context inside `inputs`, which equals
        onehot(rules).
        """
        batch = inputs.shape[0]
        values = inputs[:, :2].reshape(batch * 2, 1)
        context = inputs[:, 2:]
        context_embedding = self.context_encoder(context)
        embedding = torch.cat((self.value_encoder(values).reshape(batch, -1), context_embedding), dim=1)

        if self.kind == "monolithic":
            return self.decoder(self.core(embedding)), None

        hidden = F.relu(self.first_layers(embedding)).view(batch, self.rules, self.module_width)
        if self.packed:
            features, module_weights = self.mix_packed(hidden, context, context_embedding)
        else:
            features, module_weights = self.mix_grouped(hidden, context, context_embedding)
        return self.decoder(features), module_weights

    def mix_grouped(self, hidden, context, context_embedding):
        """Run every module's second layer, then take the p-weighted sum of the outputs."""
        outputs = self.second_layers(hidden)
        if self.kind == "modular":
            module_weights = F.softmax(outputs[..., -1], dim=-1)
            outputs = outputs[..., :-1]
        else:
            module_weights = self.fixed_weights(context, context_embedding)
        return (outputs * module_weights.unsqueeze(-1)).sum(dim=1), module_weights

    def mix_packed(self, hidden, context, context_embedding):
        """Scale each module's hidden slice by p first, then run one dense product."""
        weight = self.second_layers.weight
        bias = self.second_layers.bias
        if self.kind == "modular":
            logits = (hidden * weight[..., -1]).sum(dim=-1) + bias[:, -1]
            module_weights = F.softmax(logits, dim=-1)
            weight = weight[..., :-1]
            bias = bias[:, :-1]
        else:
            module_weights = self.fixed_weights(context, context_embedding)
        scaled = (hidden * module_weights.unsqueeze(-1)).reshape(hidden.shape[0], -1)
        features = scaled @ weight.reshape(-1, weight.shape[-1]) + module_weights @ bias
        return features, module_weights

    def fixed_weights(self, context, context_embedding):
        """Return p of the kinds whose weights do not come from the modules themselves."""
        if self.kind == "modular-op":
            return F.softmax(self.scorer(context_embedding), dim=-1)
        return context


def build_model(kind, rules, encoder_dim, hidden_dim, packed=True):
    """Build an MLP classification model of `kind`, one of MODEL_KINDS."""
    return MlpModel(kind, rules, encoder_dim, hidden_dim, packed=packed)


def make_batch(rules, batch_size, data_seed=0):
    """Return (inputs [batch, 2 + R], rules [batch], targets [batch, 1]) of the MLP rule task.

    x1, x2 ~ N(0, 1), a uniform rule c, and the label 1[a_c x1 + b_c x2 >= 0], with the
    coefficients a, b ~ N(0, 1) drawn from `data_seed`. The samples come from torch's global
    generator, so they are fresh on every call.
    """
    coefficients = torch.randn(rules, 2, generator=torch.Generator().manual_seed(data_seed))
    values = torch.randn(batch_size, 2)
    rule_ids = torch.randint(0, rules, (batch_size,))
    context = F.one_hot(rule_ids, rules).to(values.dtype)
    targets = ((values * coefficients[rule_ids]).sum(dim=1, keepdim=True) >= 0).to(values.dtype)
    return torch.cat((values, context), dim=1), rule_ids, targets


def parameter_count(model):
    """Return the number of trainable parameter values of `model`."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
