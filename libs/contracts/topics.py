"""Kafka topics of the public contract (SPEC section 5) and their message keys."""

from enum import StrEnum


class Topic(StrEnum):
    CHANNEL_ORDERS = "oms.channel-orders.v1"  # key "{channel}:{external_id}", ChannelOrder
    CHANNEL_ORDERS_REJECTED = "oms.channel-orders.rejected.v1"  # same key, ChannelOrderRejected
    ORDERS = "oms.orders.v1"  # key order_id: OrderPlaced, OrderCancelled, OrderModified, OrderHeld, OrderHoldReleased
    INVENTORY = "oms.inventory.v1"  # key sku: StockAdjusted, PurchaseOrderChanged; key location_id: LocationChanged
    ALLOCATIONS = "oms.allocations.v1"  # key order_id: allocation results
    FULFILLMENT = "oms.fulfillment.v1"  # key order_id: PackRequested, OrderPacked, OrderShipped, ...
    AVAILABILITY = "oms.availability.v1"  # key sku: AvailabilityChanged
    # key "{shop}:{inventory_item_id}": ShopifyInventoryLevel (order intake's Shopify connector)
    SHOPIFY_INVENTORY_LEVELS = "oms.shopify.inventory-levels.v1"
    DROPSHIP = "oms.dropship.v1"  # key location_id (the supplier's): DropshipRequested


ALL_TOPICS: tuple[str, ...] = tuple(t.value for t in Topic)


def dlq(topic: str) -> str:
    """Dead-letter topic of ``topic``: messages that failed after bounded retries."""
    return f"{topic}.dlq"
