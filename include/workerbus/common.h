/**
 * @file common.h
 * Export macro and small shared definitions of the workerbus public API.
 */
#ifndef WORKERBUS_COMMON_H
#define WORKERBUS_COMMON_H

#if defined(WB_BUILDING_LIBRARY) && defined(__GNUC__)
#define WB_API __attribute__((visibility("default")))
#else
#define WB_API
#endif

#endif
