r"""LLM-CFSR (Zha et al., PR&AI 2025, seed 004), reconstructed: ``LLMCFSR_<Backbone>``.

**A reconstruction, not a reimplementation.** Only the paper's abstract and references are public
and no code exists (``shared/docs/baselines-notes.md`` §6). The abstract names three parts; each is
built here from the work it cites, and every choice the abstract leaves open is marked *choice*:

1. **Fine-grained semantic embeddings** from "attribute-level data augmentation and contrastive
   fine-tuning": LLMEmb's supervised contrastive fine-tuning (its reference [22]), run on the
   project's local encoder by ``dataset_scripts/finetune_encoder.py``; the fine-tuned encoder is a
   folder the ``local`` provider loads, so its item table is a cache like any other
   (``--llm_emb_model=<folder> --llm_emb_suffix=itememb-scft``). The model itself reads whatever
   item table the config names.
2. **Dual-view modelling** of a semantic and a collaborative view: LLM-ESR (its reference [27];
   :mod:`~recbole_faerec.model.sequential_recommender.llmesr`): the frozen LLM table through a linear
   adapter, the PCA-initialised ID table, one shared backbone encoder over both views.
3. **Cross-attention fusion at the embedding, sequence and prediction layers**:

   * embedding layer: LLM-ESR's two cross-attentions of the input views, each view attending over
     the other; *choice*: added to the inputs, :math:`\hat e = e + \mathrm{MCA}(e, e')`, as the
     two later layers do (``llmesr_cross_residual: True``, the default here; it scored higher on
     validation than replacing the inputs as LLM-ESR does, ``False``);
     ``llmesr_cross_attention: False`` leaves the layer out;
   * sequence layer (*choice*): the encoded state sequences attend over each other, with a residual,
     causally: :math:`\hat h^{id} = h^{id} + \mathrm{MCA}(h^{id}, h^{llm})`,
     :math:`\hat h^{llm} = h^{llm} + \mathrm{MCA}(h^{llm}, h^{id})`;
   * prediction layer (*choice*): at each position the two view states are two tokens that attend
     over both (a 2-token multi-head attention with a residual), then stand side by side:
     :math:`u = [\tilde h^{id} ; \tilde h^{llm}]`, scored against :math:`r_i = [E_i ; a_i]` as in
     LLM-ESR.

LLM-ESR's retrieval-augmented self-distillation is not in the abstract: ``llmcfsr`` defaults it off
(``llmesr_distill_weight: 0`` in ``props/model/LLMCFSR.yaml``; set it to use it).
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_faerec.model.llm_item import method_family
from recbole_faerec.model.sequential_recommender.llmesr import CrossAttention, LLMESRMixin


class LLMCFSRMixin(LLMESRMixin):
    """LLM-ESR's two views with cross-attention fusion also at the sequence and prediction layers
    (see the module). Config keys: LLM-ESR's (``props/model/LLMESR.yaml``), and
    ``llmcfsr_sequence_fusion``, ``llmcfsr_prediction_fusion`` (``props/model/LLMCFSR.yaml``)."""

    method_name = "LLMCFSR"
    plugin_config_models = ("LLMItem", "LLMESR", "LLMCFSR")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.item_embedding.embedding_dim
        heads, dropout = config["llmesr_heads"], config["llmesr_attention_dropout"]
        self.sequence_fusion = bool(config["llmcfsr_sequence_fusion"])
        self.prediction_fusion = bool(config["llmcfsr_prediction_fusion"])
        # a fusion layer switched off has no weights (as LLM-ESR's cross-attention)
        self.id_over_llm_states = self.llm_over_id_states = self.view_tokens = self.view_type = None
        if self.sequence_fusion:
            self.id_over_llm_states = CrossAttention(d, heads, dropout)
            self.llm_over_id_states = CrossAttention(d, heads, dropout)
        if self.prediction_fusion:
            self.view_tokens = CrossAttention(d, heads, dropout)
            self.view_type = nn.Embedding(2, d)  # which view a prediction-layer token is
        self.init_new_layers(config, (self.id_over_llm_states, self.llm_over_id_states,
                                      self.view_tokens, self.view_type))

    def view_states(self, item_seq, item_seq_len, every_position: bool):
        """Both views encoded at every position, fused at the sequence layer, then (for the last
        position only) each sequence's last state."""
        h_id, h_llm = super().view_states(item_seq, item_seq_len, True)
        if self.sequence_fusion:
            padding = item_seq == 0
            h_id, h_llm = (h_id + self.id_over_llm_states(h_id, h_llm, padding, self.causal),
                           h_llm + self.llm_over_id_states(h_llm, h_id, padding, self.causal))
        if every_position:
            return h_id, h_llm
        last = torch.arange(len(item_seq), device=item_seq.device), item_seq_len - 1
        return h_id[last], h_llm[last]

    @classmethod
    def settings_without_effect(cls, config):
        """LLM-ESR's, less the head count and attention dropout while a later fusion layer uses
        them."""
        unused = super().settings_without_effect(config)
        if config["llmcfsr_sequence_fusion"] or config["llmcfsr_prediction_fusion"]:
            unused.pop("llmesr_heads", None)
            unused.pop("llmesr_attention_dropout", None)
        return unused

    def fuse_user(self, id_states: torch.Tensor, llm_states: torch.Tensor) -> torch.Tensor:
        """The prediction layer: the two view states of a position attend over each other as two
        tokens (with a residual), then stand side by side."""
        if not self.prediction_fusion:
            return super().fuse_user(id_states, llm_states)
        shape = id_states.shape
        tokens = torch.stack([id_states.reshape(-1, shape[-1]), llm_states.reshape(-1, shape[-1])],
                             dim=1) + self.view_type.weight  # [N, 2, d]
        none = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        fused = tokens + self.view_tokens(tokens, tokens, none, causal=False)
        return fused.reshape(*shape[:-1], 2 * shape[-1])


FAMILY = method_family(LLMCFSRMixin, __name__)
globals().update(FAMILY)

__all__ = list(FAMILY)
