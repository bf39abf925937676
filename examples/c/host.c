/*
 * A small C host for Herald: starts a server, waits for a browser to subscribe to a
 * session, streams a simulated AI task to it, then stops gracefully.
 *
 *   make -C examples/c            # builds the core (cargo) and this host
 *   ./examples/c/host [port] [session]
 *   # then connect: ws://127.0.0.1:<port>/ws?sessionId=<session>
 */
#include <herald.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(herald_status status, const char *what) {
    if (status != HERALD_OK) {
        fprintf(stderr, "%s failed (%d): %s\n", what, (int)status, herald_last_error());
        return 0;
    }
    return 1;
}

/* Waits (up to wait_ms) for an event whose JSON contains `needle`. */
static int wait_for_event(herald_server *server, const char *needle, uint32_t wait_ms) {
    for (uint32_t waited = 0; waited < wait_ms; waited += 100) {
        char *event = NULL;
        herald_status status = herald_next_event(server, 100, &event);
        if (status == HERALD_ERR_TIMEOUT) continue;
        if (!check(status, "herald_next_event")) return 0;
        int found = strstr(event, needle) != NULL;
        printf("event: %s\n", event);
        herald_string_free(event);
        if (found) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a pipe */
    const char *port = argc > 1 ? argv[1] : "3001";
    const char *session = argc > 2 ? argv[2] : "demo";

    char config[128];
    snprintf(config, sizeof config, "{\"port\": %d}", atoi(port));
    herald_server *server = NULL;
    if (!check(herald_start(config, &server), "herald_start")) return 1;
    uint16_t bound = 0;
    if (!check(herald_port(server, &bound), "herald_port")) return 1;
    printf("herald %s listening on port %u\n", herald_version(), (unsigned)bound);
    printf("connect: ws://127.0.0.1:%u/ws?sessionId=%s\n", (unsigned)bound, session);
    fflush(stdout);

    /* Errors come back as statuses with a message, never as crashes. */
    if (herald_notify_ai(server, HERALD_AI_KIND_START, session, "not json") != HERALD_ERR_INVALID_JSON) return 1;
    printf("bad JSON rejected: %s\n", herald_last_error());

    char channel[300];
    snprintf(channel, sizeof channel, "\"channel\":\"session:%s\"", session);
    if (!wait_for_event(server, channel, 60000)) {
        fprintf(stderr, "no subscriber to session %s within 60 s\n", session);
        herald_stop(server, 1000);
        return 1;
    }

    /* herald_notify_ai(server, HERALD_AI_KIND_*, ...) or its named aliases. */
    int ok = check(herald_notify_ai_start(server, session, "{\"taskId\":\"t1\",\"model\":\"demo-llm\"}"), "ai_start");
    for (int pct = 25; ok && pct <= 100; pct += 25) {
        char progress[96];
        snprintf(progress, sizeof progress, "{\"taskId\":\"t1\",\"percent\":%d}", pct);
        ok = check(herald_notify_ai(server, HERALD_AI_KIND_PROGRESS, session, progress), "ai_progress");
    }
    ok = ok && check(herald_notify_ai_complete(server, session, "{\"taskId\":\"t1\",\"output\":\"hello from C\"}"), "ai_complete");

    char *stats = NULL;
    if (ok && check(herald_stats(server, &stats), "herald_stats")) {
        printf("stats: %s\n", stats);
        herald_string_free(stats);
    }
    /* Graceful: everything queued above reaches the client before close code 1001. */
    herald_status stopped = herald_stop(server, 5000);
    printf("stopped: %d\n", (int)stopped);
    return ok && stopped == HERALD_OK ? 0 : 1;
}
