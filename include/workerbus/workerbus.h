/**
 * @file workerbus.h
 * The umbrella header of libworkerbus: include this one.
 */
#ifndef WORKERBUS_WORKERBUS_H
#define WORKERBUS_WORKERBUS_H

#include "common.h"
#include "error.h"
#include <workerbus/version.h>
#include "config.h"
#include "topic.h"
#include "pki.h"
#include "log.h"
#include "bundled.h"
#include "broker.h"
#include "worker.h"
#include "queue.h"
#include "envelope.h"
#include "drain.h"
#include "harness.h"

#endif
