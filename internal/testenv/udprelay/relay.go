package udprelay

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Options configure a Relay. Only Listen is required.
type Options struct {
	// Listen is the UDP address clients send to ("127.0.0.1:0" for tests).
	Listen string
	// Upstream is the server's "host:port"; it can also be set later with
	// SetConfig. Until it is set, client datagrams are counted as errors.
	Upstream string
	// Seed makes the random choices repeatable; 0 picks a random seed.
	Seed uint64
	// ReorderTimeout bounds how long a datagram held back for reordering
	// waits for a successor; default 100ms.
	ReorderTimeout time.Duration
	// SessionIdle closes a client's upstream socket after this long without
	// traffic either way; default 2m.
	SessionIdle time.Duration
	// Logger receives session and error events; nil discards them.
	Logger *slog.Logger
}

// Relay forwards datagrams between clients and one upstream with the
// configured impairments. Safe for concurrent use.
type Relay struct {
	conn   *net.UDPConn
	log    *slog.Logger
	opts   Options
	up     *direction
	down   *direction
	closed chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	upstream *net.UDPAddr
	sessions map[string]*session
	isClosed bool
}

type session struct {
	client   *net.UDPAddr
	conn     *net.UDPConn // connected to the upstream
	lastSeen time.Time
}

// Listen binds the relay's UDP socket and starts forwarding. Stop it with
// Close.
func Listen(opts Options) (*Relay, error) {
	laddr, err := net.ResolveUDPAddr("udp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("udprelay: listen address: %w", err)
	}
	var upstream *net.UDPAddr
	if opts.Upstream != "" {
		if upstream, err = net.ResolveUDPAddr("udp", opts.Upstream); err != nil {
			return nil, fmt.Errorf("udprelay: upstream address: %w", err)
		}
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("udprelay: %w", err)
	}
	if opts.ReorderTimeout <= 0 {
		opts.ReorderTimeout = 100 * time.Millisecond
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 2 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &Relay{
		conn:     conn,
		log:      log,
		opts:     opts,
		closed:   make(chan struct{}),
		upstream: upstream,
		sessions: map[string]*session{},
	}
	r.up = newDirection(rand.New(rand.NewPCG(seed, 1)), opts.ReorderTimeout, r.closed)
	r.down = newDirection(rand.New(rand.NewPCG(seed, 2)), opts.ReorderTimeout, r.closed)
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.up.run() }()
	go func() { defer r.wg.Done(); r.down.run() }()
	go func() { defer r.wg.Done(); r.readClients() }()
	go func() { defer r.wg.Done(); r.reapIdle() }()
	return r, nil
}

// Addr is the address clients send to.
func (r *Relay) Addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

// Close stops the relay and waits for its goroutines. Datagrams still
// delayed are discarded.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.isClosed {
		r.mu.Unlock()
		return nil
	}
	r.isClosed = true
	close(r.closed)
	for k, s := range r.sessions {
		_ = s.conn.Close()
		delete(r.sessions, k)
	}
	r.mu.Unlock()
	err := r.conn.Close()
	r.wg.Wait()
	return err
}

// Config returns the current configuration.
func (r *Relay) Config() Config {
	r.mu.Lock()
	up := ""
	if r.upstream != nil {
		up = r.upstream.String()
	}
	r.mu.Unlock()
	return Config{Upstream: up, Up: r.up.impairment(), Down: r.down.impairment()}
}

// SetConfig replaces the impairments of both directions and, when
// c.Upstream is not empty, the upstream.
func (r *Relay) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("udprelay: config: %w", err)
	}
	if c.Upstream != "" {
		ua, err := net.ResolveUDPAddr("udp", c.Upstream)
		if err != nil {
			return fmt.Errorf("udprelay: upstream address: %w", err)
		}
		r.mu.Lock()
		if r.upstream == nil || r.upstream.String() != ua.String() {
			r.upstream = ua
			// Sessions are sockets connected to the old upstream.
			for k, s := range r.sessions {
				_ = s.conn.Close()
				delete(r.sessions, k)
			}
		}
		r.mu.Unlock()
	}
	r.up.setImpairment(c.Up)
	r.down.setImpairment(c.Down)
	r.log.Info("config", "upstream", c.Upstream, "up", c.Up, "down", c.Down)
	return nil
}

// Partition cuts the link in direction d (Both for a full partition).
func (r *Relay) Partition(d Direction) error {
	if !d.valid() {
		return fmt.Errorf("udprelay: direction must be up, down or both, got %q", d)
	}
	if d != Down {
		r.up.setPartition(true)
	}
	if d != Up {
		r.down.setPartition(true)
	}
	r.log.Info("partition", "direction", d)
	return nil
}

// Heal ends a partition in both directions; other impairments stay.
func (r *Relay) Heal() {
	r.up.setPartition(false)
	r.down.setPartition(false)
	r.log.Info("heal")
}

// Reset removes every impairment and partition and zeroes the counters.
func (r *Relay) Reset() {
	r.up.setImpairment(Impairment{})
	r.down.setImpairment(Impairment{})
	r.up.resetStats()
	r.down.resetStats()
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	n := len(r.sessions)
	r.mu.Unlock()
	return Stats{Up: r.up.stats(), Down: r.down.stats(), Sessions: n}
}

func (r *Relay) readClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("read from clients", "err", err)
			continue
		}
		s, err := r.session(from)
		if err != nil {
			r.up.countError()
			r.log.Warn("session", "client", from, "err", err)
			continue
		}
		p := append([]byte(nil), buf[:n]...)
		r.up.submit(p, func(b []byte) error { _, err := s.conn.Write(b); return err })
	}
}

// session returns the client's session, dialling the upstream for a new one.
func (r *Relay) session(client *net.UDPAddr) (*session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isClosed {
		return nil, net.ErrClosed
	}
	key := client.String()
	if s, ok := r.sessions[key]; ok {
		s.lastSeen = time.Now()
		return s, nil
	}
	if r.upstream == nil {
		return nil, errors.New("no upstream configured")
	}
	c, err := net.DialUDP("udp", nil, r.upstream)
	if err != nil {
		return nil, err
	}
	s := &session{client: client, conn: c, lastSeen: time.Now()}
	r.sessions[key] = s
	r.log.Info("session", "client", client, "upstream", r.upstream, "local", c.LocalAddr())
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.readUpstream(s) }()
	return s, nil
}

func (r *Relay) readUpstream(s *session) {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP port unreachable: the upstream is not
			// listening yet. Keep the session; it may come up.
			continue
		}
		r.mu.Lock()
		s.lastSeen = time.Now()
		r.mu.Unlock()
		p := append([]byte(nil), buf[:n]...)
		r.down.submit(p, func(b []byte) error { _, err := r.conn.WriteToUDP(b, s.client); return err })
	}
}

func (r *Relay) reapIdle() {
	t := time.NewTicker(r.opts.SessionIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case now := <-t.C:
			r.mu.Lock()
			for k, s := range r.sessions {
				if now.Sub(s.lastSeen) > r.opts.SessionIdle {
					_ = s.conn.Close()
					delete(r.sessions, k)
				}
			}
			r.mu.Unlock()
		}
	}
}

// direction applies one Impairment and schedules sends in due order.
type direction struct {
	reorderTimeout time.Duration
	closed         <-chan struct{}
	wake           chan struct{}

	mu    sync.Mutex
	rng   *rand.Rand
	im    Impairment
	st    DirStats
	queue itemHeap
	seq   uint64
	held  *item // a datagram waiting for a successor to overtake it
}

type item struct {
	due  time.Time
	seq  uint64
	p    []byte
	send func([]byte) error
}

func newDirection(rng *rand.Rand, reorderTimeout time.Duration, closed <-chan struct{}) *direction {
	return &direction{rng: rng, reorderTimeout: reorderTimeout, closed: closed, wake: make(chan struct{}, 1)}
}

func (d *direction) impairment() Impairment {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.im
}

func (d *direction) setImpairment(im Impairment) {
	d.mu.Lock()
	d.im = im
	d.mu.Unlock()
}

func (d *direction) setPartition(on bool) {
	d.mu.Lock()
	d.im.Partition = on
	d.mu.Unlock()
}

func (d *direction) stats() DirStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

func (d *direction) resetStats() {
	d.mu.Lock()
	d.st = DirStats{}
	d.mu.Unlock()
}

func (d *direction) countError() {
	d.mu.Lock()
	d.st.Received++
	d.st.Errors++
	d.mu.Unlock()
}

// submit decides a datagram's fate and queues what is to be sent.
func (d *direction) submit(p []byte, send func([]byte) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Received++
	im := d.im
	if im.Partition {
		d.st.Partitioned++
		return
	}
	if im.Drop > 0 && d.rng.Float64() < im.Drop {
		d.st.Dropped++
		return
	}
	due := time.Now().Add(time.Duration(im.Delay))
	if im.Jitter > 0 {
		due = due.Add(time.Duration(d.rng.Int64N(int64(im.Jitter))))
	}
	it := &item{due: due, p: p, send: send}
	dup := im.Duplicate > 0 && d.rng.Float64() < im.Duplicate

	if d.held == nil && im.Reorder > 0 && d.rng.Float64() < im.Reorder {
		d.st.Reordered++
		d.held = it
		if dup {
			d.st.Duplicated++
			d.push(&item{due: due, p: p, send: send})
		}
		time.AfterFunc(d.reorderTimeout, func() { d.releaseHeld(it) })
		return
	}
	d.push(it)
	if dup {
		d.st.Duplicated++
		d.push(&item{due: due, p: p, send: send})
	}
	if h := d.held; h != nil {
		// The held datagram goes right after this one: same due time or
		// later, and a higher sequence number breaks the tie.
		d.held = nil
		if h.due.Before(due) {
			h.due = due
		}
		d.push(h)
	}
}

// releaseHeld sends a held datagram that no successor came to overtake.
func (d *direction) releaseHeld(it *item) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held == it {
		d.held = nil
		d.push(it)
	}
}

// push queues it; d.mu must be held.
func (d *direction) push(it *item) {
	d.seq++
	it.seq = d.seq
	heap.Push(&d.queue, it)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *direction) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		var ready []*item
		now := time.Now()
		for len(d.queue) > 0 && !d.queue[0].due.After(now) {
			ready = append(ready, heap.Pop(&d.queue).(*item))
		}
		wait := time.Hour
		if len(d.queue) > 0 {
			wait = d.queue[0].due.Sub(now)
		}
		d.mu.Unlock()

		for _, it := range ready {
			err := it.send(it.p)
			d.mu.Lock()
			if err != nil {
				d.st.Errors++
			} else {
				d.st.Forwarded++
			}
			d.mu.Unlock()
		}
		if len(ready) > 0 {
			continue // more may have become due while sending
		}
		timer.Reset(wait)
		select {
		case <-d.closed:
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// itemHeap orders by due time, then by arrival (sequence number), so equal
// delays keep datagram order.
type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
