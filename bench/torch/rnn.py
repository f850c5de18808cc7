"""PyTorch versions of the four RNN models of the modarch lab, for speed comparisons.

The models match lib/models/rnn.ts in architecture and parameter count: a step encoder
Linear(in, e)-ReLU-Linear(e, e), an LSTM state that starts at zero, and a decoder
Linear(n, n)-ReLU-Linear(n, out) at every step.

- monolithic: one torch.nn.LSTMCell of hidden size n (input and recurrent biases).
- modular, modular-op, gt-modular: R bias-free LSTM cells of hidden size n' (see
  `module_hidden_size`). All read one shared state (h, c), each proposes (h_m, c_m), and the
  new state is the sum of p_m (h_m, c_m). The module weights p are a softmax over modules of a
  bias-free score of each module's ReLU-ed input-to-hidden and hidden-to-hidden
  preactivations (modular), a softmax of a bias-free MLP(R -> n' -> R) of onehot(rule)
  (modular-op), or onehot(rule) (gt-modular).

The R cells are packed into one Linear(e, 4 R n') and one Linear(n', 4 R n'), with module m in
output columns [4 m n', 4 (m + 1) n') and gate blocks i, f, g, o inside. Inputs are
[batch, length, d + R]: d input values then the one-hot rule context, as the TypeScript task
produces them.

Only torch is needed. Example:

    model = build_model("modular", rules=4, encoder_dim=64, hidden_dim=256)
    inputs, rules, targets = make_batch(4, batch_size=256)
    output, module_weights = model(inputs, rules)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_KINDS = ("monolithic", "modular", "modular-op", "gt-modular")


def module_hidden_size(rules, encoder_dim, hidden_dim):
    """Return n', the hidden size of each modular LSTM cell matched to a Monolithic size n.

    n' is the floored positive root of (4R + 1) n'^2 + (4Re + 1) n' = 5 n^2 + n (4e + 1).
    """
    linear_term = 4 * rules * encoder_dim + 1
    quadratic_term = 4 * rules + 1
    matched = 5 * hidden_dim * hidden_dim + hidden_dim * (4 * encoder_dim + 1)
    root = (math.sqrt(linear_term ** 2 + 4 * quadratic_term * matched) - linear_term) / (2 * quadratic_term)
    return int(math.floor(root))


class ModularLSTMCell(nn.Module):
    """R bias-free LSTM cells sharing one state, mixed with per-module weights."""

    def __init__(self, input_size, hidden_size, modules, kind):
        super().__init__()
        self.hidden_size = hidden_size
        self.modules_count = modules
        self.kind = kind
        self.input_to_hidden = nn.Linear(input_size, 4 * modules * hidden_size, bias=False)
        self.hidden_to_hidden = nn.Linear(hidden_size, 4 * modules * hidden_size, bias=False)
        if kind == "modular":
            # One score vector of 8 n' weights per module, initialized as a Linear(8 n', 1).
            bound = 1.0 / math.sqrt(8 * hidden_size)
            self.score_weight = nn.Parameter(torch.empty(modules, 8 * hidden_size).uniform_(-bound, bound))
        elif kind == "modular-op":
            self.scorer = nn.Sequential(
                nn.Linear(modules, hidden_size, bias=False),
                nn.ReLU(),
                nn.Linear(hidden_size, modules, bias=False),
            )
        elif kind != "gt-modular":
            raise ValueError(f"Invalid modular kind {kind!r}. Expected one of {MODEL_KINDS[1:]}.")

    def module_weights(self, input_part, recurrent_part, context):
        """Return p [batch, R] from preactivations [batch, R, 4 n'] and context [batch, R]."""
        if self.kind == "gt-modular":
            return context
        if self.kind == "modular-op":
            return F.softmax(self.scorer(context), dim=-1)
        features = F.relu(torch.cat((input_part, recurrent_part), dim=-1))
        return F.softmax((features * self.score_weight).sum(dim=-1), dim=-1)

    def forward(self, input_part, state, context):
        """Advance one step from the precomputed input-to-hidden part [batch, 4 R n']."""
        hidden, cell = state
        batch = hidden.shape[0]
        shape = (batch, self.modules_count, 4 * self.hidden_size)
        input_part = input_part.view(shape)
        recurrent_part = self.hidden_to_hidden(hidden).view(shape)
        weights = self.module_weights(input_part, recurrent_part, context)

        gates = input_part + recurrent_part
        input_gate, forget_gate, candidate, output_gate = gates.chunk(4, dim=-1)
        proposed_cell = torch.sigmoid(forget_gate) * cell.unsqueeze(1) + torch.sigmoid(input_gate) * torch.tanh(candidate)
        proposed_hidden = torch.sigmoid(output_gate) * torch.tanh(proposed_cell)

        mixing = weights.unsqueeze(-1)
        return (proposed_hidden * mixing).sum(dim=1), (proposed_cell * mixing).sum(dim=1), weights


class RnnModel(nn.Module):
    """Encoder, LSTM cell(s) and decoder of one of the four model kinds."""

    def __init__(self, kind, rules, encoder_dim, hidden_dim, state_dim=32, output_dim=1):
        super().__init__()
        if kind not in MODEL_KINDS:
            raise ValueError(f"Invalid model kind {kind!r}. Expected one of {MODEL_KINDS}.")
        self.kind = kind
        self.rules = rules
        self.state_dim = state_dim
        self.cell_hidden_size = hidden_dim if kind == "monolithic" else module_hidden_size(rules, encoder_dim, hidden_dim)
        if self.cell_hidden_size < 1:
            raise ValueError(f"Invalid hidden_dim {hidden_dim}: each of the {rules} modules gets n' = {self.cell_hidden_size} units; use a larger size.")
        size = self.cell_hidden_size

        self.encoder = nn.Sequential(nn.Linear(state_dim + rules, encoder_dim), nn.ReLU(), nn.Linear(encoder_dim, encoder_dim))
        if kind == "monolithic":
            self.cell = nn.LSTMCell(encoder_dim, size)
        else:
            self.cell = ModularLSTMCell(encoder_dim, size, rules, kind)
        self.decoder = nn.Sequential(nn.Linear(size, size), nn.ReLU(), nn.Linear(size, output_dim))

    def forward(self, inputs, rules):
        """Return (output [batch, length, out], module weights [batch, length, R] or None).

        `rules` [batch, length] is accepted for a uniform interface; the module weights of
        modular-op and gt-modular read the one-hot context inside `inputs`, which equals
        onehot(rules).
        """
        batch, length, _ = inputs.shape
        size = self.cell_hidden_size
        embedding = self.encoder(inputs)
        hidden = inputs.new_zeros(batch, size)
        cell = inputs.new_zeros(batch, size)

        hiddens = []
        weights_per_step = []
        # unbind's backward is one stack, while indexing each step would allocate a zero
        # gradient of the whole sequence per step.
        if self.kind == "monolithic":
            for step_input in embedding.unbind(1):
                hidden, cell = self.cell(step_input, (hidden, cell))
                hiddens.append(hidden)
            module_weights = None
        else:
            contexts = inputs[..., self.state_dim:].unbind(1)
            input_parts = self.cell.input_to_hidden(embedding).unbind(1)
            for input_part, context in zip(input_parts, contexts):
                hidden, cell, weights = self.cell(input_part, (hidden, cell), context)
                hiddens.append(hidden)
                weights_per_step.append(weights)
            module_weights = torch.stack(weights_per_step, dim=1)

        output = self.decoder(torch.stack(hiddens, dim=1))
        return output, module_weights


def build_model(kind, rules, encoder_dim, hidden_dim, state_dim=32):
    """Build a classification model (one output per step) of `kind`, one of MODEL_KINDS."""
    return RnnModel(kind, rules, encoder_dim, hidden_dim, state_dim=state_dim, output_dim=1)


def make_batch(rules, batch_size, length=10, state_dim=32):
    """Return (inputs [batch, length, d + R], rules [batch, length], targets [batch, length, 1]).

    Inputs are N(0, 1) values followed by onehot(rule) with uniform rules, as the TypeScript
    task draws them. Targets are random 0/1 labels: the batch has the real shapes and dtypes
    for timing, not the labels of a switching linear system.
    """
    values = torch.randn(batch_size, length, state_dim)
    rule_ids = torch.randint(0, rules, (batch_size, length))
    context = F.one_hot(rule_ids, rules).to(values.dtype)
    inputs = torch.cat((values, context), dim=-1)
    targets = torch.randint(0, 2, (batch_size, length, 1)).to(values.dtype)
    return inputs, rule_ids, targets


def parameter_count(model):
    """Return the number of trainable parameter values of `model`."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
