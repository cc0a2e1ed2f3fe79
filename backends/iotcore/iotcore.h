/* The iotcore broker backend (not installed). */
#ifndef WB_IOTCORE_H
#define WB_IOTCORE_H

#include "broker_backend.h"

extern const wb__broker_ops wb__iotcore_broker_ops;

/* Benchmarks only: IoT Core's per-connection rates replaced (0: IoT Core's,
 * 100 msg/s and 512 KiB/s), to measure the backend's own cost against raw
 * Paho. Set before wb_broker_open(). */
void wb__iotcore_set_rates(unsigned msgs_per_s, unsigned bytes_per_s);

#endif
