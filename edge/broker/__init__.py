"""The MQTT side of the edge: embedded amqtt broker, in-process ingest, external-broker client."""
