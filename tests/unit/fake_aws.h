/* tests/unit/data/fake_aws.py as a child process of a test. */
#ifndef WBT_FAKE_AWS_H
#define WBT_FAKE_AWS_H

/* Starts it (credentials expiring in expires_in seconds); returns its port. */
unsigned wbt_fake_aws_start(const char *expires_in);
void wbt_fake_aws_stop(void);
/* How many times a path or SQS action was asked ("unsigned": requests
 * without a SigV4 Authorization header). */
int wbt_fake_aws_count(const char *key);

#endif
