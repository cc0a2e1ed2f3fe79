// The SQS stand-in for workerbus's tests and harness: local-aws-sqs (Query
// and AWS JSON 1.0 protocols) bound where it is told, with the eight logical
// queues of a workerbus install, their recommended settings and redrive
// policies. Prints one JSON line {"endpoint", "queues": {name: url}} when it
// is ready (and writes it to --ready-file); stops on SIGTERM or SIGINT.
//
//   node tools/sqs-standin.mjs --host 127.0.0.1 --port 4566 \
//        [--account 000000000000] [--region us-east-1] [--ready-file F]
import { createSqsServer } from "local-aws-sqs";
import { writeFileSync } from "node:fs";

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option("host", "127.0.0.1");
const port = Number(option("port", "4566"));
const account = option("account", "000000000000");
const region = option("region", "us-east-1");
const readyFile = option("ready-file", null);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`sqs-standin: --port must be 1-65535, got "${option("port")}"`);
  process.exit(64);
}
if (!/^[0-9]{12}$/.test(account)) {
  console.error(`sqs-standin: --account must be 12 digits, got "${account}"`);
  process.exit(64);
}

const arn = (name) => `arn:aws:sqs:${region}:${account}:${name}`;
const redrive = (dlq) => JSON.stringify({ deadLetterTargetArn: arn(dlq), maxReceiveCount: 3 });
// dead-letter queues first: the others name them in their redrive policy
const queues = [
  { QueueName: "dlq", Attributes: { VisibilityTimeout: "300" } },
  { QueueName: "dlq.fifo", Attributes: { FifoQueue: "true", VisibilityTimeout: "300" } },
  { QueueName: "async-jobs", Attributes: { VisibilityTimeout: "300", RedrivePolicy: redrive("dlq") } },
  {
    QueueName: "async-jobs.fifo",
    Attributes: { FifoQueue: "true", VisibilityTimeout: "300", RedrivePolicy: redrive("dlq.fifo") },
  },
  {
    QueueName: "cronjobs",
    Attributes: { VisibilityTimeout: "300", MessageRetentionPeriod: "3600", RedrivePolicy: redrive("dlq") },
  },
  { QueueName: "events-inbox", Attributes: { VisibilityTimeout: "300", RedrivePolicy: redrive("dlq") } },
  { QueueName: "iot", Attributes: { VisibilityTimeout: "45", RedrivePolicy: redrive("dlq") } },
  { QueueName: "webhooks", Attributes: { VisibilityTimeout: "600", RedrivePolicy: redrive("dlq") } },
];

let server;
try {
  server = await createSqsServer({
    port,
    hostname: host,
    accountId: account,
    region,
    queues,
    emulateQueueCreationLifecycle: false,
  });
} catch (e) {
  console.error(`sqs-standin: cannot listen on ${host}:${port}: ${e.message}`);
  process.exit(69);
}
const endpoint = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
const urls = Object.fromEntries(queues.map((q) => [q.QueueName, `${endpoint}/${account}/${q.QueueName}`]));
const line = JSON.stringify({ endpoint, region, account, queues: urls });
if (readyFile) writeFileSync(readyFile, line + "\n");
console.log(line);

const stop = () => {
  server.close(() => process.exit(0));
  // idle keep-alive connections would hold close() up
  if (typeof server.closeAllConnections === "function") server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
