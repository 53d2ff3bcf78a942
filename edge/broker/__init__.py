"""The MQTT side of the edge: embedded amqtt broker, in-process ingest, external-broker client.

Import from the modules (kept out of this package's namespace so that loading
the config models does not import amqtt):
``edge.broker.embedded.EmbeddedBroker``, ``edge.broker.client.ExternalMqttIngest``,
``edge.broker.passwd_cli`` (``twinedge passwd``).
"""
