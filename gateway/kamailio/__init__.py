"""Kamailio in front of the Asterisk nodes (issue 14): its config rendered from ``dialplans/kamailio/``
(``gateway.kamailio.render``, pure) and the process started, asked and stopped (``gateway.kamailio.proxy``)."""
