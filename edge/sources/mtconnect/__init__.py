"""The MTConnect source unit: ``protocol`` (probe, streams, assets and error documents) and ``multipart``
(the ``/sample`` stream reader)."""
