/*
 * Benchmark host: Herald embedded by a C program through the C ABI (include/herald.h),
 * linked statically against target/release/libherald.a.
 *
 * Prints "READY <port>" once listening, then obeys line commands on stdin
 * (the host protocol of examples/bench/loadgen/src/host.rs):
 *   push <M> <rate> <size>  -> PUSHED <M> <elapsed_ns> <retries>
 *   cost <K> <size>         -> COST <K> <elapsed_ns> <errors> <calling thread's CPU ns>
 *   quit
 * Environment: BENCH_CLIENT_QUEUE (client_queue_size, default 4096), BENCH_SESSION ("bench"),
 * BENCH_REDIS (a redis:// URL: publish through the Redis broker instead of in memory),
 * BENCH_PUBLISHERS (threads that share each push, default 1: message i is published by
 * thread i % K, so under the Redis broker, where each call waits for Redis, K calls are
 * in flight at once; the order clients see is then Redis's, checked by `seq`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald.h"

static uint64_t realtime_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* {"t":<t>,"i":<i>,"pad":"xx..."} padded to exactly `size` bytes (if it fits). */
static void build_payload(char *buf, size_t cap, uint64_t t, uint64_t i, size_t size) {
    int n = snprintf(buf, cap, "{\"t\":%llu,\"i\":%llu,\"pad\":\"", (unsigned long long)t,
                     (unsigned long long)i);
    size_t len = (size_t)n;
    while (len + 2 < size && len + 3 < cap) buf[len++] = 'x';
    buf[len++] = '"';
    buf[len++] = '}';
    buf[len] = '\0';
}

static volatile int stopping = 0;

/* One push: M messages, paced or flat out, shared by `threads` publishing threads. */
struct push_job {
    herald_server *server;
    const char *session;
    unsigned long long m;
    double rate;
    size_t size;
    unsigned threads;
    unsigned index; /* this thread's share: i % threads == index */
    struct timespec start;
    uint64_t retries, errors;
};

static void *push_share(void *arg) {
    struct push_job *job = arg;
    static __thread char payload[1 << 16];
    for (unsigned long long i = job->index; i < job->m; i += job->threads) {
        if (job->rate > 0) {
            uint64_t off = (uint64_t)((double)i * 1e9 / job->rate);
            struct timespec target = job->start;
            target.tv_sec += (time_t)(off / 1000000000u);
            target.tv_nsec += (long)(off % 1000000000u);
            if (target.tv_nsec >= 1000000000L) {
                target.tv_sec++;
                target.tv_nsec -= 1000000000L;
            }
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, NULL) == EINTR) {
            }
        }
        build_payload(payload, sizeof payload, realtime_us(), i, job->size);
        herald_status st;
        while ((st = herald_notify_ai_progress(job->server, job->session, payload)) == HERALD_ERR_QUEUE_FULL) {
            job->retries++;
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
        if (st != HERALD_OK) job->errors++;
    }
    return NULL;
}

/* Hosts consume their events; this one just drops them. */
static void *event_drain(void *arg) {
    herald_server *server = arg;
    while (!stopping) {
        char *event = NULL;
        herald_status st = herald_next_event(server, 200, &event);
        if (st == HERALD_OK) {
            herald_string_free(event);
        } else if (st != HERALD_ERR_TIMEOUT) {
            break;
        }
    }
    return NULL;
}

int main(void) {
    const char *queue = getenv("BENCH_CLIENT_QUEUE");
    const char *session = getenv("BENCH_SESSION");
    if (!queue) queue = "4096";
    if (!session) session = "bench";
    /* BENCH_REDIS=redis://host:port: the same host through the Redis broker. */
    const char *redis = getenv("BENCH_REDIS");
    const char *publishers_env = getenv("BENCH_PUBLISHERS");
    unsigned publishers = publishers_env ? (unsigned)strtoul(publishers_env, NULL, 10) : 1;
    if (publishers < 1 || publishers > 64) {
        fprintf(stderr, "BENCH_PUBLISHERS must be 1..64\n");
        return 1;
    }
    char config[512];
    if (redis && *redis) {
        snprintf(config, sizeof config,
                 "{\"port\":0,\"client_queue_size\":%s,"
                 "\"broker\":{\"redis\":{\"url\":\"%s\",\"prefix\":\"bench:\"}}}",
                 queue, redis);
    } else {
        snprintf(config, sizeof config, "{\"port\":0,\"client_queue_size\":%s}", queue);
    }
    herald_server *server = NULL;
    uint16_t port = 0;
    if (herald_start(config, &server) != HERALD_OK || herald_port(server, &port) != HERALD_OK) {
        fprintf(stderr, "herald_start failed: %s\n", herald_last_error());
        return 1;
    }
    pthread_t drain;
    pthread_create(&drain, NULL, event_drain, server);
    printf("READY %u\n", (unsigned)port);
    fflush(stdout);

    char line[256];
    static char payload[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long m = 0, k = 0;
        double rate = 0;
        size_t size = 200;
        if (sscanf(line, "push %llu %lf %zu", &m, &rate, &size) == 3) {
            struct push_job jobs[64];
            pthread_t threads[64];
            uint64_t retries = 0, errors = 0;
            uint64_t t0 = mono_ns();
            struct timespec start;
            clock_gettime(CLOCK_MONOTONIC, &start);
            for (unsigned t = 0; t < publishers; t++) {
                jobs[t] = (struct push_job){server, session, m, rate, size, publishers, t, start, 0, 0};
            }
            if (publishers == 1) {
                push_share(&jobs[0]);
            } else {
                for (unsigned t = 0; t < publishers; t++) pthread_create(&threads[t], NULL, push_share, &jobs[t]);
                for (unsigned t = 0; t < publishers; t++) pthread_join(threads[t], NULL);
            }
            for (unsigned t = 0; t < publishers; t++) {
                retries += jobs[t].retries;
                errors += jobs[t].errors;
            }
            if (errors) fprintf(stderr, "push: %llu errors: %s\n", (unsigned long long)errors, herald_last_error());
            printf("PUSHED %llu %llu %llu\n", m, (unsigned long long)(mono_ns() - t0),
                   (unsigned long long)retries);
            fflush(stdout);
        } else if (sscanf(line, "cost %llu %zu", &k, &size) == 2) {
            build_payload(payload, sizeof payload, realtime_us(), 0, size);
            uint64_t errors = 0;
            uint64_t c0 = thread_cpu_ns();
            uint64_t t0 = mono_ns();
            for (unsigned long long i = 0; i < k; i++) {
                if (herald_notify_ai_progress(server, session, payload) != HERALD_OK) errors++;
            }
            uint64_t elapsed = mono_ns() - t0;
            uint64_t cpu = thread_cpu_ns() - c0;
            printf("COST %llu %llu %llu %llu\n", k, (unsigned long long)elapsed, (unsigned long long)errors,
                   (unsigned long long)cpu);
            fflush(stdout);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    stopping = 1;
    herald_stop(server, 2000);
    pthread_join(drain, NULL);
    return 0;
}
