"""Library behind keepalived/notify.py: configuration, textfile metrics and the VIP provider
hooks (one module per provider, one interface: :class:`ngd_vip.base.Provider`)."""
