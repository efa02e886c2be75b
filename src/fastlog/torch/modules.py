"""``torch.nn`` loss modules whose forward runs :mod:`fastlog.torch.functional`.

Subclasses of the ``torch.nn`` ones, so ``isinstance`` checks, ``state_dict``
keys and ``repr`` are unchanged; :func:`fastlog.torch.patch` installs their
``forward`` on the ``torch.nn`` classes.
"""
import torch
from torch import nn

from .functional import binary_cross_entropy_with_logits, cross_entropy, kl_div, nll_loss

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "KLDivLoss"]


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` whose forward is :func:`fastlog.torch.cross_entropy`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As ``torch.nn.CrossEntropyLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> crit = FL.CrossEntropyLoss(ignore_index=0)
    >>> round(crit(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), torch.tensor([2, 0])).item(), 4)
    0.4076
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Logits, class axis 1 (or 0 for a single sample).
        target : torch.Tensor
            Class indices or class probabilities.

        Returns
        -------
        torch.Tensor
            :func:`cross_entropy` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`cross_entropy`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.CrossEntropyLoss(reduction="sum")
        >>> round(crit.forward(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item(), 4)
        0.6931
        """
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """``torch.nn.NLLLoss`` whose forward is :func:`fastlog.torch.nll_loss`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction
        As ``torch.nn.NLLLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> round(FL.NLLLoss()(logp, torch.tensor([0, 2])).item(), 4)
    0.4581
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Log-probabilities, class axis 1.
        target : torch.Tensor
            Class indices.

        Returns
        -------
        torch.Tensor
            :func:`nll_loss` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`nll_loss`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.NLLLoss(weight=torch.tensor([1.0, 3.0]))
        >>> crit.forward(torch.tensor([[-0.5, -1.0], [-2.0, -0.25]]), torch.tensor([0, 1])).item()
        0.3125
        """
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` whose forward is
    :func:`fastlog.torch.binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight, size_average, reduce, reduction, pos_weight
        As ``torch.nn.BCEWithLogitsLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> z, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0])
    >>> round(FL.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0))(z, y).item(), 4)
    0.6511
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Logits.
        target : torch.Tensor
            Targets in [0, 1], the input's shape and dtype.

        Returns
        -------
        torch.Tensor
            :func:`binary_cross_entropy_with_logits` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`binary_cross_entropy_with_logits`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.BCEWithLogitsLoss(reduction="none")
        >>> crit.forward(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).round(decimals=4)
        tensor([0.6931, 0.6931])
        """
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                pos_weight=self.pos_weight,
                                                reduction=self.reduction)


class KLDivLoss(nn.KLDivLoss):
    """``torch.nn.KLDivLoss`` whose forward is :func:`fastlog.torch.kl_div`.

    Parameters
    ----------
    size_average, reduce, reduction, log_target
        As ``torch.nn.KLDivLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logq = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    >>> round(FL.KLDivLoss(reduction="batchmean")(logq, p).item(), 4)
    0.0719
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Log-probabilities.
        target : torch.Tensor
            Probabilities (log-probabilities with ``log_target=True``), the input's shape.

        Returns
        -------
        torch.Tensor
            :func:`kl_div` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`kl_div`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.KLDivLoss(reduction="sum", log_target=True)
        >>> logq = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> crit.forward(logq, logq).item()
        0.0
        """
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
