"""An encoder, inference and a training step: transformers' BertForSequenceClassification,
compiled forward + backward, then an (eager) AdamW step, compared with an eager twin."""
import copy

import torch

import _zoo

transformers = _zoo.transformers_or_skip()


def run():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                  num_attention_heads=4, vocab_size=256, num_labels=3)
    model = transformers.BertForSequenceClassification(cfg)
    twin = copy.deepcopy(model)
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    labels = torch.tensor([0, 2])
    compiled = _zoo.compile(model)
    model.eval(), twin.eval()
    with torch.no_grad():
        rows = [_zoo.compare("inference", compiled(input_ids=ids).logits, twin(input_ids=ids).logits)]
    model.train(), twin.train()
    model.config.hidden_dropout_prob = 0.0
    for m in (model, twin):
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    for net, fn in ((model, compiled), (twin, twin)):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        loss = fn(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
    grads = [p.grad for p in model.parameters()]
    want = [p.grad for p in twin.parameters()]
    rows.append(_zoo.compare("grads", grads, want))
    rows.append(_zoo.compare("weights", [p.detach() for p in model.parameters()],
                             [p.detach() for p in twin.parameters()]))
    return rows


EXTRA = _zoo.EXTRA
