"""The Modbus source unit (TCP and RTU, pymodbus): ``config`` (loads without pymodbus), ``map`` (register
decoding and block planning), ``client`` (links to devices and serial lines), ``poll`` (one poll cycle),
``source`` (the polling loop) and ``probe`` (``twinedge probe modbus``).

Only the config is exported here, so that loading an edge config does not import pymodbus.
"""

from edge.sources.modbus.config import ModbusSourceConfig, RegisterConfig, RtuConfig, TcpConfig, check_serial_ports

__all__ = ["ModbusSourceConfig", "RegisterConfig", "RtuConfig", "TcpConfig", "check_serial_ports"]
