/* The topic rule's writer thread (MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received):
 * envelopes acknowledged to workers, written to the iot queue in batches. */
#ifndef BLTN_WRITER_H
#define BLTN_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "workerbus/workerbus.h"

typedef struct bltn_writer bltn_writer;

/* Starts the thread; it opens its own queue handle from queue_cfg (which
 * must outlive it). NULL when out of memory. */
bltn_writer *bltn_writer_start(const wb_config *queue_cfg);
/* Hands a copy of body over; false with *why (heap) when the writer holds
 * its maximum or memory runs out: the message must not be acknowledged. */
bool bltn_writer_push(bltn_writer *w, const char *body, size_t len, char **why);
/* Writes what it holds for at most flush_ms more, logs what is left (lost),
 * stops the thread and frees everything. NULL: nothing. */
void bltn_writer_stop(bltn_writer *w, unsigned flush_ms);

#endif
