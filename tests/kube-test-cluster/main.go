// kube-test-cluster runs embedded etcd and the real kube-apiserver in one process on free
// 127.0.0.1 ports, for tests (issue 10). It writes DIR/kubeconfig (an admin in system:masters,
// current context) and then DIR/ready once /readyz answers 200. SIGTERM stops both. The
// audit log of requests for HyperShift objects (metadata level) is DIR/audit.log.
//
//	kube-test-cluster --dir DIR [--token 'TOKEN,USER,UID,"GROUP1,GROUP2"']... [--stop-on-stdin-eof]
//
// --token adds a line to the apiserver's token file, so tests can act as any user, e.g. a
// ServiceAccount: user system:serviceaccount:<ns>:<name>, groups
// "system:serviceaccounts,system:serviceaccounts:<ns>". --stop-on-stdin-eof makes the process
// stop as on SIGTERM when its standard input closes: a parent that holds the write end of a
// pipe can never leave it running, whatever way the parent dies.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

type tokens []string

func (t *tokens) String() string { return strings.Join(*t, "\n") }
func (t *tokens) Set(v string) error {
	if strings.ContainsAny(v, "\r\n") || strings.Count(v, ",") < 2 {
		return fmt.Errorf("want one token-file line TOKEN,USER,UID[,\"GROUP1,GROUP2\"], got %q", v)
	}
	*t = append(*t, v)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kube-test-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	var dir string
	var extra tokens
	var stopOnEOF bool
	var readyTimeout time.Duration
	flag.StringVar(&dir, "dir", "", "working directory: etcd data, certificates, kubeconfig, ready marker (required)")
	flag.Var(&extra, "token", "extra line of the token file: TOKEN,USER,UID,\"GROUP1,GROUP2\" (repeatable)")
	flag.BoolVar(&stopOnEOF, "stop-on-stdin-eof", false, "stop as on SIGTERM when standard input reaches end of file")
	flag.DurationVar(&readyTimeout, "ready-timeout", 2*time.Minute, "give up when /readyz does not answer 200 within this time")
	flag.Parse()
	if dir == "" || flag.NArg() != 0 {
		flag.Usage()
		return errors.New("--dir DIR is required and no positional arguments are accepted")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]

	// etcd. WAL segments are preallocated: 8 MB instead of 64 MB keeps a test cluster's
	// folder small (a test cluster writes little).
	wal.SegmentSizeBytes = 8 << 20
	cfg := embed.NewConfig()
	cfg.Name = "kube-test-cluster"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdClient))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPeer))}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		return errors.New("etcd did not become ready within 60s")
	}

	// credentials
	adminToken, err := randomToken()
	if err != nil {
		return err
	}
	lines := append([]string{adminToken + `,admin,admin,"system:masters"`}, extra...)
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	saKey := filepath.Join(dir, "service-account.key")
	keyPEM, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(saKey, keyPEM); err != nil {
		return err
	}
	certDir := filepath.Join(dir, "certs")

	// audit log (DIR/audit.log, one JSON event per line): metadata of requests for HyperShift
	// objects, so tests can read the audit annotations webhooks add.
	auditPolicy := filepath.Join(dir, "audit-policy.yaml")
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n" +
		"- level: Metadata\n  resources: [{group: hypershift.openshift.io}]\n- level: None\n"
	if err := os.WriteFile(auditPolicy, []byte(policy), 0o600); err != nil {
		return err
	}

	// kube-apiserver: its own signal handler stops it on SIGTERM/SIGINT; cli.Run returns then.
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs([]string{
		"--etcd-servers=" + clientURL.String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--token-auth-file=" + tokenFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--audit-policy-file=" + auditPolicy,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-mode=blocking",
	})
	done := make(chan int, 1)
	go func() { done <- cli.Run(cmd) }()

	if stopOnEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
	}

	server := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))
	if exited, err := waitReady(done, server, certDir, adminToken, dir, readyTimeout); err != nil {
		if !exited {
			// Stop the apiserver (its signal handler is installed: it runs) before etcd closes.
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
		}
		return err
	}
	if code := <-done; code != 0 {
		return fmt.Errorf("kube-apiserver exited with status %d", code)
	}
	return nil
}

// waitReady writes DIR/kubeconfig once the serving certificate exists and DIR/ready once
// /readyz answers 200. exited tells that the apiserver has stopped (its status consumed).
func waitReady(done <-chan int, server, certDir, token, dir string, timeout time.Duration) (exited bool, err error) {
	deadline := time.Now().Add(timeout)
	caFile := filepath.Join(certDir, "apiserver.crt")
	var caPEM []byte
	for {
		select {
		case code := <-done:
			return true, fmt.Errorf("kube-apiserver exited with status %d before it was ready", code)
		default:
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("kube-apiserver not ready within %s", timeout)
		}
		if caPEM == nil {
			if b, err := os.ReadFile(caFile); err == nil && len(b) > 0 {
				if err := writeKubeconfig(filepath.Join(dir, "kubeconfig"), server, caFile, token); err != nil {
					return false, err
				}
				caPEM = b
			}
		} else if readyz(server, caPEM, token) {
			return false, writeAtomic(filepath.Join(dir, "ready"), []byte(server+"\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readyz(server string, caPEM []byte, token string) bool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, server+"/readyz", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func writeKubeconfig(path, server, caFile, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube-test-cluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["admin@kube-test-cluster"] = &clientcmdapi.Context{Cluster: "kube-test-cluster", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "admin@kube-test-cluster"
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
