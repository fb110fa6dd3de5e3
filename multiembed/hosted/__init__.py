"""Hosted embedding APIs (OpenAI and compatible servers, Voyage, Jina, Cohere, Mistral, Nomic, Gemini,
TEI) behind one client: batching within each provider's limits, retries honouring ``Retry-After``,
keys from the environment that never reach a log, and the provider's message in one-line errors.

Used by the ``hosted`` modality (``--modality hosted --model openai:text-embedding-3-small``) and by
the drop-in classes in :mod:`multiembed.model.dense` and :mod:`multiembed.model.reranker`.
"""
