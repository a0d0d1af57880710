// The message list: virtualised (only the rows in view plus overscan are in the DOM), kept
// at the bottom while new messages arrive, anchored while older pages are put above (no
// jump), loading older pages as the top comes near, with "Jump to latest" when scrolled up.
import { useVirtualizer } from '@tanstack/react-virtual';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { loadOlder, markSeen, setAtLatest } from '../lib/engine';
import { useStore } from '../lib/store';
import { Bubble } from './Bubble';
import { dayLabel } from './format';

const NEAR_TOP_PX = 400;
const AT_BOTTOM_PX = 48;

export function MessageList({
  conversationId,
  myId,
  recipients,
  group,
}: {
  conversationId: string;
  myId: string;
  recipients: string[];
  group: boolean;
}) {
  const thread = useStore((s) => s.threads[conversationId]);
  const keys = thread?.keys ?? [];
  const byKey = thread?.byKey ?? {};
  const parentRef = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const [showJump, setShowJump] = useState(false);
  const [unseen, setUnseen] = useState(0);
  /** What was at the top of the view before the last change: kept in place after it. */
  const anchor = useRef<{ key: string; offset: number } | null>(null);
  const previous = useRef<{ first?: string; last?: string; count: number }>({ count: 0 });

  const virtualizer = useVirtualizer({
    count: keys.length,
    getScrollElement: () => parentRef.current,
    estimateSize: () => 64,
    overscan: 6,
    getItemKey: (i) => keys[i],
  });

  const rememberAnchor = useCallback(() => {
    const el = parentRef.current;
    if (!el) return;
    const top = el.scrollTop;
    const item = virtualizer.getVirtualItems().find((v) => v.end > top);
    anchor.current = item ? { key: String(item.key), offset: item.start - top } : null;
  }, [virtualizer]);

  const onScroll = useCallback(() => {
    const el = parentRef.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < AT_BOTTOM_PX;
    atBottom.current = bottom;
    setAtLatest(conversationId, bottom);
    setShowJump(!bottom);
    if (bottom) {
      setUnseen(0);
      markSeen(conversationId);
    }
    rememberAnchor();
    const t = useStore.getState().threads[conversationId];
    if (el.scrollTop < NEAR_TOP_PX && t?.hasOlder && !t.loadingOlder) void loadOlder(conversationId);
  }, [conversationId, rememberAnchor]);

  // Open at the bottom.
  useLayoutEffect(() => {
    previous.current = { count: 0 };
    atBottom.current = true;
    setAtLatest(conversationId, true);
    setShowJump(false);
    setUnseen(0);
  }, [conversationId]);

  useLayoutEffect(() => {
    const prev = previous.current;
    const first = keys[0];
    const last = keys[keys.length - 1];
    previous.current = { first, last, count: keys.length };
    if (keys.length === 0) return;
    if (prev.count === 0) {
      virtualizer.scrollToIndex(keys.length - 1, { align: 'end' });
      return;
    }
    const prepended = prev.first !== undefined && first !== prev.first;
    const appended = last !== prev.last;
    if (prepended && atBottom.current) {
      // Still at the bottom (e.g. the first history page arrived under the last message).
      virtualizer.scrollToIndex(keys.length - 1, { align: 'end' });
      return;
    }
    if (prepended && anchor.current && !atBottom.current) {
      const index = keys.indexOf(anchor.current.key);
      if (index >= 0) {
        const start = virtualizer.measurementsCache[index]?.start ?? 0;
        virtualizer.scrollToOffset(start - anchor.current.offset);
      }
    }
    if (appended) {
      const newest = byKey[last];
      if (atBottom.current || newest?.senderId === myId) {
        virtualizer.scrollToIndex(keys.length - 1, { align: 'end' });
      } else if (newest) {
        setUnseen((n) => n + 1);
      }
    }
  }, [keys, byKey, myId, virtualizer]);

  // A reader at the bottom stays there while rows are measured or grow (sizes settle after
  // the first render, images of the layout change): the newest message stays in view.
  const total = virtualizer.getTotalSize();
  useLayoutEffect(() => {
    const el = parentRef.current;
    if (el && atBottom.current && keys.length > 0) el.scrollTop = el.scrollHeight;
  }, [total, keys.length]);

  // Not enough to scroll yet: keep loading older pages until the view is full.
  useEffect(() => {
    const el = parentRef.current;
    if (!el || !thread?.ready || thread.loadingOlder || !thread.hasOlder) return;
    // Also when the reader is still at the top after a page came (no scroll event follows).
    const pinnedTop = !atBottom.current && el.scrollTop < NEAR_TOP_PX;
    if (el.scrollHeight <= el.clientHeight + NEAR_TOP_PX || pinnedTop) void loadOlder(conversationId);
  }, [thread?.ready, thread?.loadingOlder, thread?.hasOlder, keys.length, conversationId]);

  const jump = () => {
    virtualizer.scrollToIndex(keys.length - 1, { align: 'end' });
    setUnseen(0);
  };

  const items = virtualizer.getVirtualItems();
  return (
    <div className="list-wrap">
      <div className="scroller" ref={parentRef} onScroll={onScroll} tabIndex={0} aria-label="Message history">
        {thread?.loadingOlder && <div className="loading-older">Loading earlier messages…</div>}
        {thread && !thread.hasOlder && keys.length > 0 && <div className="history-start">Start of the conversation</div>}
        <div role="list" aria-label="Messages" className="rows" style={{ height: virtualizer.getTotalSize() }}>
          {items.map((v) => {
            const m = byKey[keys[v.index]];
            if (!m) return null;
            const prev = v.index > 0 ? byKey[keys[v.index - 1]] : undefined;
            const newDay = !prev || prev.timestamp.slice(0, 10) !== m.timestamp.slice(0, 10);
            const own = m.senderId === myId;
            return (
              <div
                key={v.key}
                role="listitem"
                data-index={v.index}
                ref={virtualizer.measureElement}
                className={`row ${own ? 'own' : 'theirs'}`}
                style={{ transform: `translateY(${v.start}px)` }}
              >
                {newDay && <div className="day">{dayLabel(m.timestamp)}</div>}
                <Bubble m={m} own={own} recipients={recipients} group={group} showSender={group && (!prev || prev.senderId !== m.senderId)} />
              </div>
            );
          })}
        </div>
        {thread?.ready && keys.length === 0 && <p className="hint pad center">No messages yet. Say hello!</p>}
      </div>
      {showJump && (
        <button type="button" className="jump" onClick={jump}>
          Jump to latest{unseen > 0 ? ` (${unseen} new)` : ''}
        </button>
      )}
    </div>
  );
}
