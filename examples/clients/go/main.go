// Invokes a plugin on `wasmtx serve` with an Idempotency-Key and prints the outcome.
//
// A request whose answer is lost (the connection drops, a timeout) is sent again with the
// same key: the server runs a key's transaction once, so a retry gets the first run's
// answer (header Idempotent-Replayed: true) and never moves money twice. 429 (every slot
// busy) and 503 (not ready yet) are retried too; any other answer is final.
//
//	go run . -url http://127.0.0.1:8080 -token "$TOKEN" -plugin transfer \
//	    -key order-1 -input '{"from": {...}, "to": {...}, "amount": 30}'
//
// Exit status: 0 committed, 2 accepted but not yet confirmed (202: see Location), 1 anything
// else. Only the standard library.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// The body of POST /v1/plugins/{name}/invoke (the server's InvokeRequest).
type invokeRequest struct {
	Input   json.RawMessage `json:"input,omitempty"`
	Version string          `json:"version,omitempty"`
}

// The fields of an answer this program prints: a transaction's (200, 202) or a problem's.
type answer struct {
	Gid    string          `json:"gid"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Code   string          `json:"code"`
	Detail string          `json:"detail"`
}

func main() {
	url := flag.String("url", envOr("WASMTX_URL", "http://127.0.0.1:8080"), "the server")
	token := flag.String("token", os.Getenv("WASMTX_TOKEN"), "a bearer token with the invoke scope")
	plugin := flag.String("plugin", "", "the plugin's name")
	version := flag.String("version", "", "a version or alias (latest when empty)")
	input := flag.String("input", "{}", "the script's input, JSON")
	key := flag.String("key", "", "the Idempotency-Key (a random one when empty)")
	attempts := flag.Int("attempts", 5, "how many times to send the request at most")
	flag.Parse()
	if *plugin == "" {
		fmt.Fprintln(os.Stderr, "give -plugin NAME")
		os.Exit(1)
	}
	if !json.Valid([]byte(*input)) {
		fmt.Fprintln(os.Stderr, "-input is not JSON")
		os.Exit(1)
	}
	if *key == "" {
		*key = randomKey()
	}
	body, err := json.Marshal(invokeRequest{Input: json.RawMessage(*input), Version: *version})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	endpoint := fmt.Sprintf("%s/v1/plugins/%s/invoke", *url, *plugin)
	client := &http.Client{Timeout: 60 * time.Second}
	status, replayed, reply, err := invokeWithRetries(client, endpoint, *token, *key, body, *attempts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "no answer after %d attempts (key %s): %v\n", *attempts, *key, err)
		os.Exit(1)
	}
	fmt.Printf("HTTP %d key=%s replayed=%t gid=%s status=%s", status, *key, replayed, reply.Gid, reply.Status)
	if reply.Code != "" {
		fmt.Printf(" code=%s detail=%q", reply.Code, reply.Detail)
	}
	if len(reply.Output) > 0 {
		fmt.Printf(" output=%s", reply.Output)
	}
	fmt.Println()
	switch status {
	case http.StatusOK:
		os.Exit(0)
	case http.StatusAccepted:
		os.Exit(2)
	default:
		os.Exit(1)
	}
}

// Sends the request until an answer arrives that is final, at most `attempts` times, always
// with the same key.
func invokeWithRetries(client *http.Client, endpoint, token, key string, body []byte, attempts int) (int, bool, answer, error) {
	var lastErr error
	wait := 200 * time.Millisecond
	for attempt := 1; attempt <= attempts; attempt++ {
		status, replayed, reply, err := invokeOnce(client, endpoint, token, key, body)
		if err == nil && status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			return status, replayed, reply, nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d %s", status, reply.Code)
		}
		lastErr = err
		fmt.Fprintf(os.Stderr, "attempt %d: %v; retrying with the same key\n", attempt, err)
		time.Sleep(wait)
		wait *= 2
	}
	return 0, false, answer{}, lastErr
}

func invokeOnce(client *http.Client, endpoint, token, key string, body []byte) (int, bool, answer, error) {
	request, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, false, answer{}, err
	}
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Idempotency-Key", key)
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	response, err := client.Do(request)
	if err != nil {
		return 0, false, answer{}, err
	}
	defer response.Body.Close()
	text, err := io.ReadAll(response.Body)
	if err != nil {
		// The answer was lost half-way: the same key finds out what happened.
		return 0, false, answer{}, err
	}
	var reply answer
	if err := json.Unmarshal(text, &reply); err != nil {
		return 0, false, answer{}, errors.New("the answer is not JSON: " + string(text))
	}
	return response.StatusCode, response.Header.Get("Idempotent-Replayed") == "true", reply, nil
}

func randomKey() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
