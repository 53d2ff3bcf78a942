"""Process models in the cloud: virtual sensors computed from live telemetry, and the PUR moulding twin.

``model`` holds the contract every process model meets; ``ode`` the ODE
backends behind one interface; ``pur`` the polyurethane foam moulding model.
"""
