/* The iotcore broker backend (not installed). */
#ifndef WB_IOTCORE_H
#define WB_IOTCORE_H

#include "broker_backend.h"

extern const wb__broker_ops wb__iotcore_broker_ops;

#endif
